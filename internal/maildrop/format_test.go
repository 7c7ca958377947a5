package maildrop

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func sample() (*Drop, []byte) {
	return &Drop{UID: 1000, User: "alice", Arrival: time.Unix(1733500000, 123456789), From: "alice",
		Rcpts: []string{"bob@example.org", `"a b"@example.org`, "carol"}}, []byte("Subject: hi\r\n\r\nbody\r\n")
}

func encode(t testing.TB, d *Drop, msg []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := Encode(&b, d, msg); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	d, msg := sample()
	data := encode(t, d, msg)
	got, gotMsg, err := Decode(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.UID != d.UID || got.User != d.User || !got.Arrival.Equal(d.Arrival) || got.From != d.From || !slices.Equal(got.Rcpts, d.Rcpts) || !bytes.Equal(gotMsg, msg) {
		t.Errorf("decoded %+v %q, want %+v %q", got, gotMsg, d, msg)
	}
	// The null sender and an empty message survive too.
	d.From = ""
	if got, m, err := Decode(encode(t, d, nil), 0); err != nil || got.From != "" || len(m) != 0 {
		t.Errorf("null sender, empty message: %+v %q %v", got, m, err)
	}
}

// Every way a file can be wrong is refused with a reason, never taken
// in part.
func TestDecodeRefuses(t *testing.T) {
	d, msg := sample()
	good := string(encode(t, d, msg))
	body := fmt.Sprintf("body %d\n", len(msg))
	cases := map[string]string{
		"empty":            "",
		"garbage":          "\x00\x01GIF89a",
		"other version":    strings.Replace(good, "maildrop 1\n", "maildrop 2\n", 1),
		"truncated body":   good[:len(good)-10],
		"no end":           good[:len(good)-len(trailer)],
		"trailing junk":    good + "x",
		"longer body":      strings.Replace(good, body, fmt.Sprintf("body %d\n", len(msg)+1), 1),
		"shorter body":     strings.Replace(good, body, fmt.Sprintf("body %d\n", len(msg)-1), 1),
		"negative body":    strings.Replace(good, body, "body -1\n", 1),
		"huge body":        strings.Replace(good, body, "body 99999999999999999999\n", 1),
		"leading zero":     strings.Replace(good, "uid 1000\n", "uid 01000\n", 1),
		"uid too big":      strings.Replace(good, "uid 1000\n", "uid 4294967296\n", 1),
		"uid missing":      strings.Replace(good, "uid 1000\n", "", 1),
		"no recipient":     strings.NewReplacer("rcpt bob@example.org\n", "", "rcpt \"a b\"@example.org\n", "", "rcpt carol\n", "").Replace(good),
		"CR in recipient":  strings.Replace(good, "rcpt carol\n", "rcpt ca\rrol\n", 1),
		"NUL in sender":    strings.Replace(good, "from alice\n", "from al\x00ice\n", 1),
		"empty user":       strings.Replace(good, "user alice\n", "user \n", 1),
		"fields reordered": strings.Replace(strings.Replace(good, "user alice\n", "", 1), "from ", "user alice\nfrom ", 1),
		"unknown field":    strings.Replace(good, "from alice\n", "from alice\nx-evil 1\n", 1),
		"long line":        strings.Replace(good, "rcpt carol\n", "rcpt "+strings.Repeat("c", maxLine)+"\n", 1),
	}
	for name, data := range cases {
		if got, _, err := Decode([]byte(data), 0); err == nil {
			t.Errorf("%s: decoded %+v, want an error", name, got)
		}
	}
	if _, _, err := Decode([]byte(good), int64(len(msg)-1)); err == nil {
		t.Error("a message over the limit was decoded")
	}
	if _, _, err := Decode([]byte(good), int64(len(msg))); err != nil {
		t.Errorf("a message at the limit: %v", err)
	}
}

// Encode refuses what Decode would.
func TestEncodeRefuses(t *testing.T) {
	for name, d := range map[string]*Drop{
		"no recipient":   {UID: 1, User: "u"},
		"no user":        {UID: 1, Rcpts: []string{"a"}},
		"LF in sender":   {UID: 1, User: "u", From: "a\nrcpt b", Rcpts: []string{"a"}},
		"CR in rcpt":     {UID: 1, User: "u", Rcpts: []string{"a\r"}},
		"DEL in user":    {UID: 1, User: "u\x7f", Rcpts: []string{"a"}},
		"long recipient": {UID: 1, User: "u", Rcpts: []string{strings.Repeat("a", maxLine)}},
	} {
		if err := Encode(&bytes.Buffer{}, d, nil); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

// FuzzDecode: no input crashes Decode, and what it accepts encodes back
// to the same bytes (one spelling per submission, so nothing can hide
// in a second one).
func FuzzDecode(f *testing.F) {
	d, msg := sample()
	f.Add(encode(f, d, msg))
	d.From, d.Rcpts = "", []string{"x"}
	f.Add(encode(f, d, nil))
	f.Add([]byte("mailtee-maildrop 1\nuid 0\nuser root\ntime 0\nfrom \nrcpt a\nbody 0\nend\n"))
	f.Add([]byte("mailtee-maildrop 1\nuid 1\nuser u\ntime 1\nfrom a\nrcpt a\nbody 5\nabend\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, msg, err := Decode(data, 1<<20)
		if err != nil {
			return
		}
		var b bytes.Buffer
		if err := Encode(&b, d, msg); err != nil {
			t.Fatalf("decoded %+v but cannot encode it: %v", d, err)
		}
		if !bytes.Equal(b.Bytes(), data) {
			t.Fatalf("re-encoded differently:\n%q\n%q", data, b.Bytes())
		}
	})
}
