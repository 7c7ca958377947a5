package web

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// The committed outputs of htpasswd and argon2 (testdata/passwords.real
// says how each was made) verify with the right password only.
func TestRealToolHashes(t *testing.T) {
	p, d, err := LoadPasswords("testdata/passwords.real")
	if err != nil || p == nil {
		t.Fatalf("LoadPasswords: %v %v", err, d)
	}
	// The cost-5 line is htpasswd's default: a warning, not an error.
	if len(d) != 1 || d[0].Line != 2 || !strings.Contains(d[0].Msg, "bcrypt cost 5") {
		t.Errorf("findings %v, want one warning about cost 5 at line 2", d)
	}
	for _, tc := range []struct {
		user, pw string
		ok       bool
	}{
		{"admin", "secret", true}, {"admin", "Secret", false}, {"admin", "", false},
		{"ops", "pass word", true}, {"ops", "secret", false},
		{"argon", "secret", true}, {"argon", "secret ", false},
		{"nobody", "secret", false}, {"", "secret", false},
	} {
		// twice: the second answer may come from the cache of good pairs
		for i := 0; i < 2; i++ {
			if got := p.Verify(tc.user, tc.pw); got != tc.ok {
				t.Errorf("Verify(%q, %q) #%d = %v, want %v", tc.user, tc.pw, i+1, got, tc.ok)
			}
		}
	}
	// One bare hash: any user name.
	bare, d, err := LoadPasswords("testdata/argon2.bare")
	if err != nil || bare == nil {
		t.Fatalf("bare: %v %v", err, d)
	}
	if !bare.Verify("whoever", "secret") || bare.Verify("whoever", "nope") {
		t.Error("bare argon2id hash: wrong verdicts")
	}
}

// Fresh outputs of the tools, when installed (apt-get install
// apache2-utils argon2).
func TestToolsNow(t *testing.T) {
	var lines []string
	if _, err := exec.LookPath("htpasswd"); err == nil {
		out, err := exec.Command("htpasswd", "-nbB", "-C", "10", "admin", "s3cret:with colon").Output()
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, strings.TrimSpace(string(out)))
	} else {
		t.Log("htpasswd not installed (apache2-utils): skipped")
	}
	if _, err := exec.LookPath("argon2"); err == nil {
		cmd := exec.Command("argon2", "0123456789abcdef", "-id", "-e")
		cmd.Stdin = strings.NewReader("s3cret:with colon")
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, "argon:"+strings.TrimSpace(string(out)))
	} else {
		t.Log("argon2 not installed: skipped")
	}
	if lines == nil {
		t.Skip("neither htpasswd nor argon2 installed")
	}
	p, d := ParsePasswords("pw", []byte(strings.Join(lines, "\n")+"\n"))
	if p == nil || len(d) != 0 {
		t.Fatalf("%q: %v", lines, d)
	}
	for _, l := range lines {
		user, _, _ := strings.Cut(l, ":")
		if !p.Verify(user, "s3cret:with colon") || p.Verify(user, "s3cret") {
			t.Errorf("%s: wrong verdicts", l)
		}
	}
}

func TestParsePasswordsErrors(t *testing.T) {
	real, _ := os.ReadFile("testdata/passwords.real")
	good := strings.Split(string(real), "\n")[3] // ops:$2y$10$...
	goodHash := strings.TrimPrefix(good, "ops:")
	for _, tc := range []struct {
		name, text string
		line       int
		want       string
	}{
		{"md5", "# c\nadmin:$apr1$DRNI43qI$dLywcupLHnxK2pmVPZXEV/\n", 2, "MD5, SHA and crypt"},
		{"sha", "admin:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n", 1, "MD5, SHA and crypt"},
		{"plain", "admin:secret\n", 1, "not a supported hash"},
		{"short bcrypt", "admin:$2y$10$abc\n", 1, "not a bcrypt hash"},
		{"cost", "admin:$2y$31$" + goodHash[7:] + "\n", 1, "cost 31"},
		{"argon2i", "a:$argon2i$v=19$m=4096,t=3,p=1$c2FsdHNhbHQ$aGFzaA\n", 1, "only argon2id"},
		{"argon v16", "a:$argon2id$v=16$m=4096,t=3,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2g\n", 1, "version 19"},
		{"argon memory", "a:$argon2id$v=19$m=4194304,t=3,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2g\n", 1, "more than m="},
		{"argon params", "a:$argon2id$v=19$m=4096,t=3$c2FsdHNhbHRzYWx0$aGFzaGhhc2g\n", 1, "expected m=KiB"},
		{"argon dup", "a:$argon2id$v=19$m=4096,m=4096,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2g\n", 1, "expected m=KiB"},
		{"argon salt", "a:$argon2id$v=19$m=4096,t=3,p=1$c2FsdA$aGFzaGhhc2g\n", 1, "salt"},
		{"argon b64", "a:$argon2id$v=19$m=4096,t=3,p=1$c2FsdHNhbHRzYWx0$!!\n", 1, "argon2id hash"},
		{"dup user", good + "\n\n" + good + "\n", 3, "again (first on line 1)"},
		{"empty user", ":" + goodHash + "\n", 1, "empty user name"},
		{"blank user", "ad min:" + goodHash + "\n", 1, "blank or control"},
		{"bare and users", goodHash + "\n" + good + "\n", 0, "only entry"},
		{"empty", "# nothing\n\n", 0, "no entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, d := ParsePasswords("/etc/mailtee/pw", []byte(tc.text))
			if p != nil || !d.HasErrors() {
				t.Fatalf("accepted: %v", d)
			}
			found := false
			for _, x := range d {
				if x.File == "/etc/mailtee/pw" && x.Line == tc.line && strings.Contains(x.Msg, tc.want) && strings.Contains(x.Msg, "dashboard_password_file") {
					found = true
				}
			}
			if !found {
				t.Errorf("findings %v: want one at line %d with %q", d, tc.line, tc.want)
			}
		})
	}
	// A file that is no password file: a few line errors, then a count.
	text := strings.Repeat("root:x:0:0:root:/root:/bin/bash\n", 40)
	_, d := ParsePasswords("/etc/passwd", []byte(text))
	if len(d) != 6 || !strings.Contains(d[5].Msg, "35 more lines") {
		t.Errorf("/etc/passwd as the password file: %d findings, want 6 ending with a count: %v", len(d), d)
	}
}

func FuzzParsePasswords(f *testing.F) {
	real, _ := os.ReadFile("testdata/passwords.real")
	f.Add(string(real), "secret")
	f.Add("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2g\n", "x")
	f.Add("a:$argon2id$v=19$m=8,t=1,p=1,x=2$c2FsdHNhbHRzYWx0$aGFzaA==\n", "")
	f.Add("a:$2b$04$"+strings.Repeat(".", 53)+"\n", "")
	f.Fuzz(func(t *testing.T, text, pw string) {
		p, d := ParsePasswords("f", []byte(text))
		if (p == nil) != d.HasErrors() {
			t.Fatalf("nil %v but errors %v", p == nil, d.HasErrors())
		}
		if p != nil && len(text) < 4096 {
			// Verify must not panic, whatever the hash said; argon2
			// costs are bounded by parseArgon2id, so this stays fast
			// only for small ones: skip the expensive.
			hashes := []hash{p.any}
			for _, h := range p.users {
				hashes = append(hashes, h)
			}
			for _, h := range hashes {
				if a, ok := h.(*argon2idHash); ok && a.memory*a.time > 1<<16 {
					return
				}
				if b, ok := h.(bcryptHash); ok && len(b) > 5 && b[4:6] > "06" {
					return
				}
			}
			p.Verify("a", pw)
		}
	})
}
