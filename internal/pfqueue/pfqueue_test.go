package pfqueue

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The files under testdata/queue were written by Postfix 3.7.11 (a
// private instance, see pfimport's end-to-end test for how): deferred
// mail to a closed port, a message held by header_checks, one whose
// second recipient went to the error transport while bounce(8) could
// not post its notice (bounce/ log still pending), one with DSN RET,
// ENVID, NOTIFY and ORCPT, and two postdrop files (pickup absent), one
// of sendmail -t.
const td = "testdata/queue"

func read(t *testing.T, path string) *Message {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(td, path))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Read(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if !m.Complete {
		t.Fatalf("%s: no END record found", path)
	}
	return m
}

func TestReadDSN(t *testing.T) {
	m := read(t, "deferred/2/27EEB98A551")
	if m.Sender != "dave@client.test" || m.EnvID != "env+42" || m.Ret != RetHdrs {
		t.Errorf("sender %q envid %q ret %d", m.Sender, m.EnvID, m.Ret)
	}
	if m.Arrival.Unix() < 1e9 || m.ContentSize != 336 {
		t.Errorf("arrival %v size %d", m.Arrival, m.ContentSize)
	}
	want := []Rcpt{
		{Addr: "d1@defer.example", Orig: "d1@defer.example", DSNOrcpt: "rfc822;orig-d1@client.test", Notify: NotifySuccess | NotifyFailure, Off: 689},
		{Addr: "d2@defer.example", Orig: "d2@defer.example", DSNOrcpt: "rfc822;d2@defer.example", Notify: NotifyNever, Off: 780},
	}
	if len(m.Rcpts) != len(want) {
		t.Fatalf("recipients %+v", m.Rcpts)
	}
	for i := range want {
		if m.Rcpts[i] != want[i] {
			t.Errorf("recipient %d = %+v; want %+v", i, m.Rcpts[i], want[i])
		}
	}
	if NotifyString(m.Rcpts[0].Notify) != "SUCCESS,FAILURE" || NotifyString(m.Rcpts[1].Notify) != "NEVER" || RetString(m.Ret) != "HDRS" {
		t.Error("NotifyString/RetString")
	}
	if m.Attrs["log_client_address"] != "127.0.0.1" || m.Attrs["log_helo_name"] != "client.test" {
		t.Errorf("attrs %v", m.Attrs)
	}
	if int64(len(m.Content))+int64(bytes.Count(m.Content, []byte("\n"))) != m.ContentSize {
		// Postfix counts CRLF line ends in the SIZE record's content length.
		t.Errorf("content %d bytes, %d lines; SIZE says %d:\n%s", len(m.Content), bytes.Count(m.Content, []byte("\n")), m.ContentSize, m.Content)
	}
	if !bytes.Contains(m.Content, []byte("\nSubject: dsn\n")) || !bytes.HasSuffix(m.Content, []byte("body of dsn\nline two\n")) {
		t.Errorf("content:\n%s", m.Content)
	}
}

func TestReadDoneRecipient(t *testing.T) {
	m := read(t, "deferred/B/B260998A3D9")
	if len(m.Rcpts) != 2 || m.Rcpts[0].Done || !m.Rcpts[1].Done || m.Rcpts[1].Addr != "c2@bounce.example" {
		t.Fatalf("recipients %+v", m.Rcpts)
	}
	if p := m.Pending(); len(p) != 1 || p[0].Addr != "c1@defer.example" {
		t.Errorf("pending %+v", p)
	}
}

func TestReadMaildrop(t *testing.T) {
	m := read(t, "maildrop/1F8FE98A2F2")
	if m.ContentSize != -1 || m.Sender != "erin@client.test" || m.EnvID != "env-erin" || m.Attrs["rewrite_context"] != "local" {
		t.Errorf("%+v", m)
	}
	if len(m.Rcpts) != 1 || m.Rcpts[0].Addr != "m1@defer.example" || m.Rcpts[0].Notify != NotifySuccess|NotifyDelay {
		t.Errorf("recipients %+v", m.Rcpts)
	}
	// The last line had no newline: an L record closed by XTRA.
	if !bytes.HasSuffix(m.Content, []byte("dropped body\nno newline at end\n")) {
		t.Errorf("content %q", m.Content)
	}
	m = read(t, "maildrop/21DF598A2F3")
	if m.Sender != "root" || len(m.Rcpts) != 2 || !m.Rcpts[0].Extracted || m.Rcpts[1].Addr != "t2@defer.example" {
		t.Errorf("sendmail -t file: %q %+v", m.Sender, m.Rcpts)
	}
}

// Every file's recipients agree with Postfix's own postcat.
func TestReadAgainstPostcat(t *testing.T) {
	if _, err := exec.LookPath("postcat"); err != nil {
		t.Skip("postcat not found: Debian's postfix package is needed")
	}
	files, err := Scan(td)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 7 {
		t.Fatalf("Scan found %d files: %+v", len(files), files)
	}
	for _, f := range files {
		out, err := exec.Command("postcat", "-e", "-c", "/etc/postfix", f.Path).CombinedOutput()
		if err != nil {
			t.Fatalf("postcat %s: %v\n%s", f.Path, err, out)
		}
		var want []string
		for _, line := range strings.Split(string(out), "\n") {
			for _, p := range []string{"recipient: ", "done_recipient: "} {
				if a, ok := strings.CutPrefix(line, p); ok {
					want = append(want, p+a)
				}
			}
		}
		b, _ := os.ReadFile(f.Path)
		m, err := Read(b)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range m.Rcpts {
			p := "recipient: "
			if r.Done {
				p = "done_recipient: "
			}
			got = append(got, p+r.Addr)
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: recipients\n%s\npostcat says\n%s", f.Path, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

func TestScan(t *testing.T) {
	files, err := Scan(td)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]File{}
	for _, f := range files {
		got[f.Queue+"/"+f.ID] = f
	}
	b := got["deferred/B260998A3D9"]
	if b.Path != filepath.Join(td, "deferred/B/B260998A3D9") || b.Logs["bounce"] != filepath.Join(td, "bounce/B260998A3D9") || b.Logs["defer"] == "" {
		t.Errorf("hashed file and its logs: %+v", b)
	}
	if _, ok := got["hold/249B398A541"]; !ok {
		t.Errorf("hold missing: %v", got)
	}
	if _, ok := got["maildrop/21DF598A2F3"]; !ok {
		t.Errorf("maildrop missing: %v", got)
	}
}

func TestReadLog(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(td, "defer/2/27EEB98A551"))
	if err != nil {
		t.Fatal(err)
	}
	es := ReadLog(b)
	if len(es) != 2 || es[0].Recipient != "d1@defer.example" || es[0].Status != "4.4.1" || es[0].Action != "delayed" ||
		es[0].Offset != 689 || es[0].Notify != 6 || !strings.Contains(es[0].Reason, "Connection refused") {
		t.Errorf("%+v", es)
	}
	b, _ = os.ReadFile(filepath.Join(td, "bounce/B260998A3D9"))
	es = ReadLog(b)
	if len(es) != 1 || es[0].Recipient != "c2@bounce.example" || es[0].Status != "5.1.1" || es[0].Reason != "no such user" || es[0].Offset != 715 {
		t.Errorf("%+v", es)
	}
	if UnquoteLogAddr(`"a b"@x.example`) != "a b@x.example" || UnquoteLogAddr("<>") != "" || UnquoteLogAddr("u@x") != "u@x" {
		t.Error("UnquoteLogAddr")
	}
}

// rec builds a record as rec_put does.
func rec(typ byte, data string) []byte {
	out := []byte{typ}
	n := len(data)
	for {
		b := byte(n & 0x7f)
		if n >>= 7; n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, data...)
}

func TestReadPointersAndLengths(t *testing.T) {
	long := strings.Repeat("x", 300) // a two-byte length
	var f []byte
	f = append(f, rec('T', "1700000000 5")...)
	f = append(f, rec('S', "s@example")...)
	ptrAt := len(f)
	f = append(f, rec('p', "000000000000000")...) // patched below
	back := len(f)
	f = append(f, rec('M', "")...)
	f = append(f, rec('N', "Subject: "+long)...)
	f = append(f, rec('X', "")...)
	f = append(f, rec('E', "")...)
	// The recipient appended at the end, jumped to and back.
	appended := len(f)
	f = append(f, rec('R', "r@example")...)
	f = append(f, rec('p', padNum(back))...)
	copy(f[ptrAt:], rec('p', padNum(appended)))
	m, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Rcpts) != 1 || m.Rcpts[0].Addr != "r@example" || string(m.Content) != "Subject: "+long+"\n" ||
		!m.Arrival.Equal(time.Unix(1700000000, 5000)) {
		t.Errorf("%+v", m)
	}
	// A loop of pointers ends in an error, not forever.
	t1 := rec('T', "1")
	loop := append(t1, rec('p', padNum(len(t1)))...)
	if _, err := Read(loop); !errors.Is(err, ErrFormat) {
		t.Errorf("pointer loop: %v", err)
	}
	if _, err := Read(append(rec('T', "1"), 'S', 0x85)); !errors.Is(err, ErrFormat) {
		t.Errorf("truncated length: %v", err)
	}
	if _, err := Read(rec('T', "1")); !errors.Is(err, ErrFormat) {
		t.Errorf("no END record: %v", err)
	}
}

func padNum(n int) string {
	s := strings.Repeat(" ", 15) + itoa(n)
	return s[len(s)-15:]
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// FuzzRead: no input makes Read panic or run away; what it returns
// without error has an END record.
func FuzzRead(f *testing.F) {
	for _, dir := range []string{td, "testdata/longid", "testdata/special"} {
		files, _ := Scan(dir)
		for _, fl := range files {
			if b, err := os.ReadFile(fl.Path); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte("T\x011S\x00M\x00N\x02hiX\x00E\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Read(b)
		if err == nil && !m.Complete {
			t.Fatal("no error and no END record")
		}
		ReadLog(b)
	})
}

// Long queue IDs (enable_long_queue_ids) in queues hashed two levels
// deep (hash_queue_depth = 2), as Postfix 3.7 wrote them.
func TestScanLongIDs(t *testing.T) {
	files, err := Scan("testdata/longid")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].ID != "4jjJ9V3HWgz1SPD9" || files[0].Queue != "deferred" ||
		files[0].Logs["defer"] != "testdata/longid/defer/7/1/4jjJ9V3HWgz1SPD9" {
		t.Fatalf("%+v", files)
	}
	b, _ := os.ReadFile(files[0].Path)
	m, err := Read(b)
	if err != nil || m.Sender != "long@client.test" || len(m.Pending()) != 1 {
		t.Errorf("%+v %v", m, err)
	}
}
