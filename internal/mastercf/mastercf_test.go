package mastercf

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/config"
)

// The expected services are what Postfix 3.7.11's `postconf -M` and
// `postconf -P` print for the same file, except for "-osyslog_name=...":
// postconf 3.7 splits that at every 'o', while the daemon's getopt(3),
// which is what runs, reads one -o option.
func TestParse(t *testing.T) {
	in := `# comment
smtp      inet  n       -       y       -       -       smtpd
127.0.0.1:2525 inet n - n - - smtpd
  -o { smtpd_banner = hello world $myhostname }
# comment inside

  -o smtpd_recipient_restrictions=reject -o x=
submission inet n - n - - smtpd -osyslog_name=postfix/sub -o {smtpd_tls_security_level =encrypt}
[::1]:2626 inet n - n - - smtpd -v -o
  a=b
relay     unix  -       -       n       -       -       smtp
        -o syslog_name=postfix/$service_name
maildrop  unix  -       n       n       60?       1       pipe
  flags=DRXhu user=vmail argv=/usr/bin/maildrop -d ${recipient} { a b }
`
	f, d := Parse("/etc/postfix/master.cf", []byte(in))
	if len(d) != 0 {
		t.Fatalf("findings: %v", d)
	}
	want := []Service{
		{Name: "smtp", Type: "inet", Private: "n", Unpriv: "-", Chroot: "y", Wakeup: "-", MaxProc: "-", Command: "smtpd", Line: 2},
		{Name: "127.0.0.1:2525", Type: "inet", Private: "n", Unpriv: "-", Chroot: "n", Wakeup: "-", MaxProc: "-", Command: "smtpd", Line: 3,
			Args:      []string{"-o", "smtpd_banner = hello world $myhostname", "-o", "smtpd_recipient_restrictions=reject", "-o", "x="},
			Overrides: []Override{{"smtpd_banner", "hello world $myhostname", 4}, {"smtpd_recipient_restrictions", "reject", 7}, {"x", "", 7}}},
		{Name: "submission", Type: "inet", Private: "n", Unpriv: "-", Chroot: "n", Wakeup: "-", MaxProc: "-", Command: "smtpd", Line: 8,
			Args:      []string{"-osyslog_name=postfix/sub", "-o", "smtpd_tls_security_level =encrypt"},
			Overrides: []Override{{"syslog_name", "postfix/sub", 8}, {"smtpd_tls_security_level", "encrypt", 8}}},
		{Name: "[::1]:2626", Type: "inet", Private: "n", Unpriv: "-", Chroot: "n", Wakeup: "-", MaxProc: "-", Command: "smtpd", Line: 9,
			Args: []string{"-v", "-o", "a=b"}, Overrides: []Override{{"a", "b", 10}}},
		{Name: "relay", Type: "unix", Private: "-", Unpriv: "-", Chroot: "n", Wakeup: "-", MaxProc: "-", Command: "smtp", Line: 11,
			Args: []string{"-o", "syslog_name=postfix/$service_name"}, Overrides: []Override{{"syslog_name", "postfix/$service_name", 12}}},
		{Name: "maildrop", Type: "unix", Private: "-", Unpriv: "n", Chroot: "n", Wakeup: "60?", MaxProc: "1", Command: "pipe", Line: 13,
			Args: []string{"flags=DRXhu", "user=vmail", "argv=/usr/bin/maildrop", "-d", "${recipient}", "a b"}},
	}
	if !reflect.DeepEqual(f.Services, want) {
		for i := range max(len(want), len(f.Services)) {
			var g, w Service
			if i < len(f.Services) {
				g = f.Services[i]
			}
			if i < len(want) {
				w = want[i]
			}
			if !reflect.DeepEqual(g, w) {
				t.Errorf("service %d:\n got %#v\nwant %#v", i, g, w)
			}
		}
	}
	if ops := f.Lookup("maildrop", "unix").Operands(); len(ops) != 6 || ops[0] != "flags=DRXhu" {
		t.Errorf("maildrop operands = %q", ops)
	}
	if o, ok := f.Lookup("127.0.0.1:2525", "inet").Override("smtpd_recipient_restrictions"); !ok || o.Value != "reject" {
		t.Errorf("Override = %v, %v", o, ok)
	}
}

// Entries Postfix refuses: each is an error at its line, naming the field,
// and the entries around it are kept.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"smtp inet n - y - - \n", "line 1: bad field count: 7 fields"},
		{"smtp inet n - y -\n  -\n", "line 1: bad field count: 7 fields"},
		{"smtp tcp n - y - - smtpd\n", `line 1: invalid type field "tcp"`},
		{"smtp inet yes - y - - smtpd\n", `line 1: invalid private field "yes"`},
		{"smtp inet y - y - - smtpd\n", "inet service cannot be private"},
		{"smtp inet n - y 1x - smtpd\n", `invalid wakeup field "1x"`},
		{"smtp inet n - y - ten smtpd\n", `invalid maxproc field "ten"`},
		{"1.2.3.4:25x inet n - y - - smtpd\n", "garbage after numerical service"},
		{"[::1:25 inet n - y - - smtpd\n", `missing "]"`},
		{"[ipv6:1.2.3.4]:25 inet n - y - - smtpd\n", "malformed IPv6 address"},
		{"smtp inet n - y - - smtpd\n  -o { a = b\n", "line 2: service smtp: missing '}'"},
		{"smtp inet n - y - - smtpd\n  -o {a=b}c\n", "line 2: service smtp: syntax error after '}'"},
		{"smtp inet n - y - - smtpd -o\n", "option -o requires a value"},
		{"smtp inet n - y - - smtpd -o novalue\n", `invalid "-o novalue" option value: missing '=' after attribute name`},
		{"smtp inet n - y - - smtpd -o =x\n", "missing attribute name"},
		{"smtp inet n - y - - smtpd\nsmtp inet n - y - - smtpd\n", "line 2: duplicate service smtp/inet (first defined at line 2)"},
	} {
		f, d := Parse("master.cf", []byte("pickup unix n - y 60 1 pickup\n"+tc.in+"qmgr unix n - n 300 1 qmgr\n"))
		if len(d) != 1 || !strings.Contains(d.Err().Error(), "master.cf, line ") {
			t.Errorf("%q: findings %v, want one error", tc.in, d)
			continue
		}
		// Lines are shifted by the pickup entry in front.
		got := d[0].String()
		wantLine := tc.want
		if strings.HasPrefix(tc.want, "line ") {
			var n int
			rest := ""
			if i := strings.Index(tc.want, ":"); i > 0 {
				rest = tc.want[i:]
				for _, c := range tc.want[5:i] {
					n = n*10 + int(c-'0')
				}
			}
			wantLine = "line " + string(rune('0'+n+1)) + rest
		}
		if !strings.Contains(got, wantLine) {
			t.Errorf("%q: got %s, want %q", tc.in, got, wantLine)
		}
		if f.Lookup("pickup", "unix") == nil || f.Lookup("qmgr", "unix") == nil {
			t.Errorf("%q: the entries around the bad one are lost", tc.in)
		}
	}
}

func TestLogicalLines(t *testing.T) {
	f, d := Parse("m", []byte("  orphan x\n   y\nsmtp inet n - n - - smtpd\r\n\t-o a=b\r\n"))
	if len(d) != 1 || d[0].Line != 1 || d[0].Severity.String() != "warning" {
		t.Errorf("findings = %v, want one warning at line 1", d)
	}
	if len(f.Services) != 1 || f.Services[0].Line != 3 || f.Services[0].Overrides[0].Line != 4 {
		t.Errorf("services = %+v", f.Services)
	}
}

func TestSplitEndpoint(t *testing.T) {
	for _, tc := range []struct{ in, host, port string }{
		{"smtp", "", "smtp"},
		{"2525", "", "2525"},
		{"127.0.0.1:2525", "127.0.0.1", "2525"},
		{"localhost:smtp", "localhost", "smtp"},
		{"[::1]:25", "::1", "25"},
		{"[ipv6:::1]:25", "::1", "25"},
		{"[127.0.0.1]:submission", "127.0.0.1", "submission"},
		{"::1:25", "::1", "25"},
	} {
		h, p, err := SplitEndpoint(tc.in)
		if err != nil || h != tc.host || p != tc.port {
			t.Errorf("SplitEndpoint(%q) = %q, %q, %v; want %q, %q", tc.in, h, p, err, tc.host, tc.port)
		}
	}
	for _, bad := range []string{"[::1]x", "host:", "bad host:25", "1.2.3.4:2x"} {
		if _, _, err := SplitEndpoint(bad); err == nil {
			t.Errorf("SplitEndpoint(%q): no error", bad)
		}
	}
}

func TestServicePort(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "services")
	os.WriteFile(file, []byte("# x\nsmtp\t\t25/tcp\t\tmail\nsubmissions 4650/tcp ssmtp smtps # tls\nfoo 99/udp\nbar x/tcp\n"), 0o644)
	old := ServicesFile
	t.Cleanup(func() { ServicesFile = old })
	ServicesFile = file
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"smtp", "25", true}, {"mail", "25", true}, {"smtps", "4650", true}, {"submissions", "4650", true},
		{"submission", "587", true}, // built in
		{"2525", "2525", true}, {"foo", "", false}, {"bar", "", false}, {"nosuch", "", false},
	} {
		if got, ok := ServicePort(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("ServicePort(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	ServicesFile = filepath.Join(dir, "missing")
	for in, want := range map[string]string{"smtp": "25", "submission": "587", "smtps": "465", "submissions": "465"} {
		if got, ok := ServicePort(in); got != want || !ok {
			t.Errorf("without a services file: ServicePort(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// Debian's stock master.cf parses without a finding.
func TestStock(t *testing.T) {
	f, d, err := Load("testdata/stockdir")
	if err != nil || f != nil || d != nil {
		t.Errorf("Load of a directory without master.cf = %v, %v, %v; want nil, nil, nil", f, d, err)
	}
	data, err := os.ReadFile("testdata/master.cf.dist")
	if err != nil {
		t.Fatal(err)
	}
	f, d = Parse("master.cf", data)
	if len(d) != 0 {
		t.Fatalf("findings: %v", d)
	}
	if len(f.Services) != 31 {
		t.Errorf("%d services, want 31", len(f.Services))
	}
	if s := f.Lookup("smtp", "inet"); s == nil || s.Command != "smtpd" || s.Line != 12 {
		t.Errorf("smtp/inet = %+v", s)
	}
	if s := f.Lookup("mailman", "unix"); s == nil || s.Program() != "pipe" || len(s.Operands()) != 5 {
		t.Errorf("mailman/unix = %+v", s)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("smtp inet n - y - - smtpd\n  -o { a = b } -o c=$d\n"))
	f.Add([]byte("[::1]:25 inet n - n - - smtpd -oa=b {x {y}} {\n#c\n  z\nmaildrop unix - n n - - pipe\n flags=R argv=/x ${recipient}\n"))
	f.Add([]byte("  x\n127.0.0.1:smtp inet n - - 60? 1 smtpd -- -o\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		f, d := Parse("master.cf", data)
		for _, x := range d {
			if x.Line < 1 || x.Line > strings.Count(string(data), "\n")+1 {
				t.Fatalf("finding at line %d: %v", x.Line, x)
			}
		}
		for _, s := range f.Services {
			if s.Type == "inet" {
				if _, _, err := SplitEndpoint(s.Name); err != nil {
					t.Fatalf("accepted inet service %q: %v", s.Name, err)
				}
			}
			for _, o := range s.Overrides {
				if o.Name == "" || o.Line < s.Line {
					t.Fatalf("override %+v of service at line %d", o, s.Line)
				}
			}
			s.Operands()
		}
	})
}

func TestNames(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "master.cf"), []byte("smtp inet n - y - - smtpd\n -o smtpd_client_restrictions=$mua_client_restrictions\n -o { milter_macro_daemon_name = ${x?{$y}} $$z }\nsmtp unix - - y - - smtp\nrelay unix - - y - - smtp -o syslog_name=postfix/$(service_name)\n"), 0o644)
	services, params := Names(dir)
	if want := []string{"relay", "smtp"}; !reflect.DeepEqual(services, want) {
		t.Errorf("services %q, want %q", services, want)
	}
	if want := []string{"milter_macro_daemon_name", "mua_client_restrictions", "service_name", "smtpd_client_restrictions", "syslog_name", "x", "y"}; !reflect.DeepEqual(params, want) {
		t.Errorf("params %q, want %q", params, want)
	}
	if s, p := Names(t.TempDir()); s != nil || p != nil {
		t.Errorf("without master.cf: %q, %q", s, p)
	}
}

// A reference with blanks inside its parentheses or braces, "$( name )",
// names a parameter as Postfix 3.7's mac_expand.c reads it (and as
// internal/config's references() does for main.cf): a user-defined
// name used only that way from master.cf is not "unknown" to check.
func TestReferencesWithBlanks(t *testing.T) {
	got := config.References("$( mua_rcpt ) ${\tother} $(x)")
	if want := []string{"mua_rcpt", "other", "x"}; !reflect.DeepEqual(got, want) {
		t.Errorf("References = %q, want %q", got, want)
	}
}
