package srs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/config"
)

// The vectors below are postsrsd 1.10's own answers (Debian bookworm's
// postsrsd_1.10-2+b1, run on loopback as
// "postsrsd -s secret -d srs.example.org -f 41001 -r 41002" with the
// secret file "tops3cr3t\noldsecret\n", asked "get ADDRESS" on its
// forward and reverse ports at Unix time 1796616697, day 20794, stamp
// J2). K/vr is a second postsrsd's whose file held "oldsecret" alone.
var vecNow = time.Unix(1796616697, 0)

func vecCodec() *Codec {
	c := New("srs.example.org", [][]byte{[]byte("tops3cr3t"), []byte("oldsecret")})
	c.Now = func() time.Time { return vecNow }
	return c
}

func TestForwardPostsrsdVectors(t *testing.T) {
	c := vecCodec()
	for _, v := range []struct{ in, want string }{
		{"alice@sender.example", "SRS0=7Cba=J2=sender.example=alice@srs.example.org"},
		{"Alice.Smith@Sender.Example", "SRS0=m/eT=J2=Sender.Example=Alice.Smith@srs.example.org"},
		{"user+tag@Example.COM", "SRS0=tmYu=J2=Example.COM=user+tag@srs.example.org"},
		// Another forwarder's SRS0 becomes SRS1, and an SRS1 is signed
		// again with its first forwarder kept.
		{"SRS0=abcd=AB=orig.example=bob@other.example", "SRS1=on9K=other.example==abcd=AB=orig.example=bob@srs.example.org"},
		{"SRS1=XyZw=other.example==abcd=AB=orig.example=bob@third.example", "SRS1=on9K=other.example==abcd=AB=orig.example=bob@srs.example.org"},
		// Ours already (postsrsd: "Already rewritten"), and a sender at
		// srs_domain itself: unchanged.
		{"SRS0=7Cba=J2=sender.example=alice@srs.example.org", "SRS0=7Cba=J2=sender.example=alice@srs.example.org"},
		{"alice@srs.example.org", "alice@srs.example.org"},
		{"", ""},
	} {
		got, err := c.Forward(v.in)
		if err != nil || got != v.want {
			t.Errorf("Forward(%q) = %q, %v; want %q (postsrsd)", v.in, got, err, v.want)
		}
	}
	old := New("srs.example.org", [][]byte{[]byte("oldsecret")})
	old.Now = c.Now
	if got, _ := old.Forward("alice@sender.example"); got != "SRS0=K/vr=J2=sender.example=alice@srs.example.org" {
		t.Errorf("Forward with oldsecret = %q, want postsrsd's SRS0=K/vr=...", got)
	}
	if Stamp(vecNow) != "J2" {
		t.Errorf("Stamp = %q, want J2", Stamp(vecNow))
	}
}

func TestReversePostsrsdVectors(t *testing.T) {
	c := vecCodec()
	for _, v := range []struct {
		in, want string
		err      error
	}{
		{"SRS0=7Cba=J2=sender.example=alice@srs.example.org", "alice@sender.example", nil},
		{"srs0=7cba=j2=sender.example=alice@srs.example.org", "alice@sender.example", nil}, // folded by a server
		{"SRS0=7Cba=J2=sender.example=alice@whatever.example", "alice@sender.example", nil},
		// Rotation: signed with the second line's secret.
		{"SRS0=K/vr=J2=sender.example=alice@srs.example.org", "alice@sender.example", nil},
		{"SRS1=on9K=other.example==abcd=AB=orig.example=bob@srs.example.org", "SRS0=abcd=AB=orig.example=bob@other.example", nil},
		{"SRS0=7Cbb=J2=sender.example=alice@srs.example.org", "", ErrHash},
		{"SRS0=7Cba=J3=sender.example=alice@srs.example.org", "", ErrExpired}, // tomorrow's
		{"SRS0=7Cba=J2=sender.example=mallory@srs.example.org", "", ErrHash},
		{"SRS1=on9K=other.example==abcd=AB=orig.example=eve@srs.example.org", "", ErrHash},
		{"alice@srs.example.org", "", ErrNotSRS},
		{"SRS0=7Cba=J2=sender.example@srs.example.org", "", ErrSyntax},
		{"SRS0=7C=J2=sender.example=alice@srs.example.org", "", ErrHash}, // too short
		{"SRS1=on9K@srs.example.org", "", ErrSyntax},
	} {
		got, err := c.Reverse(v.in)
		if got != v.want || !errors.Is(err, v.err) {
			t.Errorf("Reverse(%q) = %q, %v; want %q, %v", v.in, got, err, v.want, v.err)
		}
	}
}

func TestMaxAge(t *testing.T) {
	c := vecCodec()
	addr := "SRS0=7Cba=J2=sender.example=alice@srs.example.org"
	for days, ok := range map[int]bool{0: true, 1: true, 21: true, 22: false, 500: false, 1023: false} {
		c.Now = func() time.Time { return vecNow.Add(time.Duration(days) * day) }
		_, err := c.Reverse(addr)
		if (err == nil) != ok {
			t.Errorf("%d days later: Reverse: %v, want ok=%v", days, err, ok)
		}
	}
	// Across the 1024-day wrap: a stamp of day 1023 checked on day 3.
	c.Now = func() time.Time { return time.Unix(1023*86400, 0) }
	a, _ := c.Forward("x@y.example")
	c.Now = func() time.Time { return time.Unix((1024+3)*86400, 0) }
	if _, err := c.Reverse(a); err != nil {
		t.Errorf("across the wrap: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	c := vecCodec()
	for _, from := range []string{"a@b.example", `"a b"@x.example`, "o'neil+x@Sub.Example.NET", "SRS0=abcd=AB=orig.example=bob@other.example", "ünï@exämple.de"} {
		fwd, err := c.Forward(from)
		if err != nil {
			t.Fatalf("Forward(%q): %v", from, err)
		}
		if !strings.HasSuffix(fwd, "@srs.example.org") {
			t.Errorf("Forward(%q) = %q", from, fwd)
		}
		back, err := c.Reverse(fwd)
		if err != nil || back != from {
			t.Errorf("Reverse(Forward(%q)) = %q, %v (via %q)", from, back, err, fwd)
		}
	}
	// A rotated codec, the old secret second, still reads the old ones.
	fwd, _ := c.Forward("a@b.example")
	rot := New("srs.example.org", [][]byte{[]byte("brandnew"), []byte("tops3cr3t")})
	rot.Now = c.Now
	if back, err := rot.Reverse(fwd); err != nil || back != "a@b.example" {
		t.Errorf("after rotation: %q, %v", back, err)
	}
	gone := New("srs.example.org", [][]byte{[]byte("brandnew")})
	gone.Now = c.Now
	if _, err := gone.Reverse(fwd); !errors.Is(err, ErrHash) {
		t.Errorf("old secret removed: %v, want ErrHash", err)
	}
}

func TestParseSecrets(t *testing.T) {
	got := ParseSecrets([]byte("\r\nfirst one\r\n\nsecond\n"))
	if len(got) != 2 || string(got[0]) != "first one" || string(got[1]) != "second" {
		t.Errorf("ParseSecrets = %q", got)
	}
}

func loadCfg(t *testing.T, text string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	return config.Parse(dir, filepath.Join(dir, "main.cf"), []byte(text))
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("0123456789abcdefghij\nold\n"), 0o600)
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte("0123456789abcdefghij\n"), 0o644)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n\n"), 0o600)
	relay := func(d string) (string, error) {
		if d == "relayed.example" {
			return "relay_domains", nil
		}
		return "", nil
	}
	for _, c := range []struct{ cf, want string }{
		{"", ""},
		{"srs_domain = srs.example.org\nsrs_secret_file = " + good + "\n", ""},
		{"srs_domain = srs.example.org\n", "error: " + "%s, line 1: srs_domain is set and srs_secret_file is not"},
		{"srs_domain = srs.example.org\nsrs_secret_file = " + dir + "/nope\n", "error: %s, line 2: srs_secret_file: open " + dir + "/nope: no such file"},
		{"srs_domain = srs.example.org\nsrs_secret_file = " + empty + "\n", "error: " + empty + ", line 1: no secret"},
		{"srs_domain = srs.example.org\nsrs_secret_file = " + open + "\n", "warning: " + open + ": srs_secret_file is readable or writable by others (mode 0644)"},
		{"srs_domain = relayed.example\nsrs_secret_file = " + good + "\n", "warning: %s, line 1: srs_domain = relayed.example is also in relay_domains"},
		{"srs_domain = bad domain\nsrs_secret_file = " + good + "\n", "error: %s, line 1: srs_domain = bad domain: not a domain"},
		{"srs_secret_file = " + good + "\n", "warning: %s, line 1: srs_secret_file is set but srs_domain is not"},
	} {
		cfg := loadCfg(t, c.cf)
		got := Check(cfg, relay)
		if c.want == "" {
			if len(got) != 0 {
				t.Errorf("%q: %v, want nothing", c.cf, got)
			}
			continue
		}
		want := c.want
		if strings.Contains(want, "%s") {
			want = strings.Replace(want, "%s", cfg.File, 1)
		}
		if len(got) == 0 || !strings.HasPrefix(got[0].String(), want) {
			t.Errorf("%q: %v, want %s...", c.cf, got, want)
		}
	}
}
