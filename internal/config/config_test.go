package config

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/diag"
)

func parse(t *testing.T, text string) *Config {
	t.Helper()
	return Parse("/cfg", "/cfg/main.cf", []byte(text))
}

// diagsMatching returns the findings whose message contains sub.
func diagsMatching(l diag.List, sub string) diag.List {
	var out diag.List
	for _, d := range l {
		if strings.Contains(d.Msg, sub) {
			out = append(out, d)
		}
	}
	return out
}

// postconf(5): continuation lines, comments only at line start, the last
// definition wins (Postfix 3.7 warns "overriding earlier entry").
func TestParseSyntax(t *testing.T) {
	c := parse(t, "mydestination = a,\n    b\n  # comment\n\tc # d\nmyhostname=  x.y   \nmyhostname = z\nfoo\n")
	if got := c.Get("mydestination"); got != "a,    b\tc # d" {
		t.Errorf("mydestination = %q, want %q (only the newlines go)", got, "a,    b\tc # d")
	}
	if got := strings.Join(c.List("mydestination"), "|"); got != "a|b|c|#|d" {
		t.Errorf("mydestination list = %q", got)
	}
	if got := c.Get("myhostname"); got != "z" {
		t.Errorf("myhostname = %q, want the last definition z", got)
	}
	if d := diagsMatching(c.Diags, "overriding earlier entry"); len(d) != 1 || d[0].Line != 6 {
		t.Errorf("want one 'overriding' warning at line 6, got %v", d)
	}
	if d := diagsMatching(c.Diags, "missing '='"); len(d) != 1 || d[0].Line != 7 || d[0].Severity != diag.Error {
		t.Errorf("want an error for line 7 without '=', got %v", d)
	}
	if d := diagsMatching(c.Check(), "'#' starts a comment"); len(d) != 1 {
		t.Errorf("want a warning about the '#' inside a value, got %v", d)
	}
}

// Expected values are what `postconf -x` of Postfix 3.7.11 printed for the
// same main.cf.
func TestExpand(t *testing.T) {
	c := parse(t, `myhostname = h.example.com
a1 = $myhostname
a2 = ${myhostname}/$(mydomain) $$x $undefinedparam
a3 = ${relayhost?yes}|${relayhost:no}|${myhostname?{set}:{unset}}|${relayhost?{set}:{unset}}
a4 = ${{$compatibility_level} <level {2} ? {old} : {new}}|${{abc} == {abc} ? {eq} : {ne}}|${{10} < {9} ? {lt} : {ge}}|${{3.6} >=level {3.10} ? {A}:{B}}
a8 = ${{10} <= {9} ? {lt} : {ge}} ${{a} < {b} ? {lt} : {ge}}
smtpd_banner = $a1 $a2 $a3 $a4 $a8
`)
	want := map[string]string{
		"a1":            "h.example.com",
		"a2":            "h.example.com/example.com $x",
		"a3":            "|no|set|unset",
		"a4":            "old|eq|ge|B",
		"a8":            "ge lt",
		"mydestination": "h.example.com, localhost.example.com, localhost",
		"myorigin":      "h.example.com",
		"relay_domains": "h.example.com, localhost.example.com, localhost", // compatibility_level 0
	}
	for name, w := range want {
		if got := c.Get(name); got != w {
			t.Errorf("%s = %q, want %q", name, got, w)
		}
	}
	if d := c.Check(); d.HasErrors() {
		t.Errorf("user-defined parameters referenced by smtpd_banner must not be errors: %v", d)
	}
	if d := diagsMatching(c.Check(), "undefined parameter $undefinedparam"); len(d) != 1 {
		t.Errorf("want a warning for $undefinedparam, got %v", d)
	}
}

func TestExpandLoop(t *testing.T) {
	c := parse(t, "a5 = x $a6\na6 = $a5\nsmtpd_banner = $a5\n")
	if _, err := c.Expand("$a5"); err == nil || !strings.Contains(err.Error(), "nesting") {
		t.Fatalf("a reference loop must fail with a nesting error, got %v", err)
	}
	if !c.Check().HasErrors() {
		t.Error("Check must report the loop as an error")
	}
}

func TestExpandBlowup(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 25; i++ {
		fmt.Fprintf(&b, "p%d = $p%d $p%d\n", i, i+1, i+1)
	}
	b.WriteString("p25 = x\nsmtpd_banner = $p0\n")
	c := parse(t, b.String())
	if _, err := c.Expand("$p0"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("a doubling chain must stop with an error, got %v", err)
	}
}

// mydomain's default comes from myhostname, and mynetworks' from
// mynetworks_style: a value referring back must not recurse forever.
func TestDerivedDefaultLoops(t *testing.T) {
	c := parse(t, "myhostname = mx.$mydomain\nmynetworks_style = $mynetworks\n")
	if got := c.Get("myhostname"); got == "" || !strings.HasPrefix(got, "mx.") {
		t.Errorf("myhostname = %q", got)
	}
	// mynetworks_style refers back to mynetworks: no style, so no
	// mynetworks, and check says why (Postfix cannot compute it either).
	if got := c.Get("mynetworks"); got != "" {
		t.Errorf("mynetworks = %q", got)
	}
	if d := diagsMatching(c.Check(), "bad mynetworks_style value"); len(d) != 1 {
		t.Errorf("want an error about mynetworks_style, got %v", c.Check())
	}
}

func TestUnknownParameterSuggestion(t *testing.T) {
	c := parse(t, "mydestinaton = example.com\nfrobnicate_everything = 1\n")
	d := c.Check()
	if m := diagsMatching(d, "mydestinaton: unknown parameter; did you mean mydestination?"); len(m) != 1 || m[0].Line != 1 || m[0].Severity != diag.Error {
		t.Errorf("want an error with a suggestion on line 1, got %v", d)
	}
	if m := diagsMatching(d, "frobnicate_everything: unknown parameter"); len(m) != 1 || strings.Contains(m[0].Msg, "did you mean") {
		t.Errorf("want an error without a suggestion, got %v", m)
	}
}

func TestSupportClasses(t *testing.T) {
	cases := []struct {
		line  string
		sev   diag.Severity
		match string
	}{
		{"smtpd_milters = inet:127.0.0.1:8891", diag.Error, "could change what filtering mail gets"},
		{"content_filter = amavis:[127.0.0.1]:10024", diag.Error, "not implemented"},
		{"smtpd_recipient_restrictions = reject_rbl_client zen.spamhaus.org", diag.Error, "SMTP access restrictions: not implemented by mailtee, and ignoring it could change what mail is accepted; set: smtpd_recipient_restrictions (line 1: reject_rbl_client)"},
		{"smtpd_client_restrictions = permit_mynetworks, reject", diag.Error, "what mail is accepted"},
		{"sender_dependent_relayhost_maps = hash:/x", diag.Error, "where mail goes"},
		{"smtp_tls_security_level = dane", diag.Error, "TLS policy of the SMTP client: not implemented by mailtee, and ignoring it could change where mail may go unencrypted; set: smtp_tls_security_level (line 1: dane)"},
		{"biff = no", diag.Warning, "not implemented by mailtee; ignored"},
		{"readme_directory = no", diag.Warning, "ignored"},
		{"smtpd_helo_required = no", diag.Warning, "set to its Postfix default"},
		{"message_size_limit = lots", diag.Error, "expected a number"},
		{"header_size_limit = 0", diag.Error, "invalid header_size_limit parameter value 0 < 1"},
		{"header_address_token_limit = -1", diag.Error, "invalid header_address_token_limit parameter value -1 < 1"},
		{"maximal_queue_lifetime = 5x", diag.Error, "bad time unit"},
		{"mynetworks = 10.1.2.3/8", diag.Error, "perhaps you should use \"10.0.0.0/8\""},
		{"mynetworks = nonsense", diag.Error, "not an IP address"},
		// Issue 13: a typo in a set of known words was ignored.
		{"masquerade_classes = envelope_sendr, header_sender", diag.Error, "did you mean envelope_sender instead of envelope_sendr?"},
		{"canonical_classes = envelope_sender, bogus", diag.Error, "\"bogus\" not supported by mailtee; it supports envelope_sender,"},
		{"sender_canonical_classes = envelope_recipient", diag.Error, "it supports envelope_sender, header_sender"},
		{"propagate_unmatched_extensions = canonical, virtul", diag.Error, "did you mean virtual"},
		{"notify_classes = resource, sofware", diag.Error, "did you mean software"},
		{"inet_protocols = ipv7", diag.Error, "\"ipv7\" not supported"},
		{"default_database_type = hahs", diag.Error, "did you mean hash"},
		{"parent_domain_matches_subdomains = relay_domain", diag.Error, "unknown parameter name; did you mean relay_domains?"},
		{"myhostname = mx..example", diag.Error, "empty label"},
		{"smtp_helo_name = bad!host", diag.Error, "invalid character"},
		{"myorigin = -x.example", diag.Error, "misplaced hyphen"},
		{"smtpd_port = 99999", diag.Error, "bad network port"},
		{"smtp_tcp_port = lots", diag.Error, "not a port number nor a known service name"},
		{"relayhost = [10.0.0.1:25", diag.Error, "missing ']'"},
		{"relayhost = mail.example:nosuchservice", diag.Error, "known service name"},
		{"inet_interfaces = 10.0.0.300/8", diag.Error, "not an IP address nor a host name"},
		{"smtp_bind_address = ::1", diag.Error, "not an IPv4 address"},
		{"smtp_bind_address6 = 127.0.0.1", diag.Error, "not an IPv6 address"},
		{"dns_servers = 127.0.0.1", diag.Error, "expected address:port"},
		{"bounce_notice_recipient = a b @@", diag.Error, "expected one address"},
		{"double_bounce_sender = <x", diag.Error, "missing closing"},
		{"masquerade_domains = !ex@mple.com", diag.Error, "invalid character"},
		{"masquerade_exceptions = root@example.com", diag.Error, "without @domain"},
		{"recipient_delimiter = +@", diag.Error, "part of address syntax"},
		{"unknown_local_recipient_reject_code = 250", diag.Error, "expected a 4XX or 5XX reply code"},
		{"smtpd_tls_cert_file = /nonexistent/cert.pem", diag.Warning, "smtpd_tls_cert_file: open /nonexistent/cert.pem: no such file or directory; serve starts without STARTTLS"},
		{"smtpd_tls_cert_file = /nonexistent/cert.pem\nsmtpd_tls_security_level = encrypt", diag.Error, "smtpd_tls_cert_file: open /nonexistent/cert.pem: no such file or directory; smtpd_tls_security_level = encrypt refuses mail without STARTTLS"},
	}
	for _, tc := range cases {
		d := parse(t, tc.line+"\n").Check()
		m := diagsMatching(d, tc.match)
		if len(m) != 1 || m[0].Severity != tc.sev || m[0].Line != 1 {
			t.Errorf("%q: want one %v containing %q, got %v", tc.line, tc.sev, tc.match, d)
		}
	}
}

// A stock Debian main.cf (main.cf.debian plus what the installer writes
// for "Internet Site") must load with warnings only.
func TestDebianStockMainCf(t *testing.T) {
	data, err := os.ReadFile("testdata/debian-main.cf")
	if err != nil {
		t.Fatal(err)
	}
	d := Parse("/etc/postfix", "/etc/postfix/main.cf", data).Check()
	if d.HasErrors() {
		t.Fatalf("stock Debian main.cf must not have errors:\n%v", d.Err())
	}
	// mailbox_size_limit is implemented since issue 14 (local(8)).
	for _, name := range []string{"biff", "readme_directory", "append_dot_mydomain", "smtp_tls_CApath"} {
		if len(diagsMatching(d, name+":")) == 0 {
			t.Errorf("want a warning naming %s (never silently ignored)", name)
		}
	}
}

func TestDefaults(t *testing.T) {
	c := parse(t, "")
	for name, want := range map[string]string{
		"queue_directory":        "/var/spool/mailtee",
		"smtpd_port":             "25",
		"maximal_queue_lifetime": "5d",
		"message_size_limit":     "10240000",
		"masquerade_classes":     "envelope_sender, header_sender, header_recipient",
		"mynetworks_style":       "subnet", // compatibility_level 0
	} {
		if got := c.Get(name); got != want {
			t.Errorf("default %s = %q, want %q", name, got, want)
		}
	}
	if got := parse(t, "compatibility_level = 3.6\n").Get("mynetworks_style"); got != "host" {
		t.Errorf("mynetworks_style at level 3.6 = %q, want host", got)
	}
	if !strings.HasPrefix(c.Get("mynetworks"), "127.0.0.0/8") {
		t.Errorf("default mynetworks %q must start with 127.0.0.0/8", c.Get("mynetworks"))
	}
	if d, err := c.Duration("maximal_queue_lifetime"); err != nil || d != 5*24*time.Hour {
		t.Errorf("maximal_queue_lifetime = %v, %v", d, err)
	}
	// A bare number takes the unit of the default (postconf(5)).
	if d, _ := parse(t, "maximal_queue_lifetime = 2\n").Duration("maximal_queue_lifetime"); d != 48*time.Hour {
		t.Errorf("maximal_queue_lifetime = 2 means 2 days, got %v", d)
	}
}

func TestSuggest(t *testing.T) {
	for in, want := range map[string]string{
		"mydestinaton":      "mydestination",
		"recipient_bc_maps": "recipient_bcc_maps",
		"transport_map":     "transport_maps",
		"masquerade_domain": "masquerade_domains",
		"zzzzzzzzzz":        "",
	} {
		if got := Suggest(in); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("myhostname = x\nmydestination = $myhostname,\n  localhost\n"))
	f.Add([]byte("a = ${{$compatibility_level} <level {2} ? {x} : {y}}\nsmtpd_banner = $a ${b?{c}:{d}} $(e) $$\n"))
	f.Add([]byte("x = ${\n= y\n  z\n#c\nq = ${a?${b:${c}}}\n"))
	// A host name in inet_interfaces is looked up in DNS, with a 10 s
	// timeout: the parser is fuzzed here, not the resolver, and a
	// lookup that waits made the fuzzing engine give up on a worker.
	old := lookupHost
	lookupHost = func(host string) ([]netip.Addr, error) {
		return nil, fmt.Errorf("lookup %s: no DNS while fuzzing", host)
	}
	f.Cleanup(func() { lookupHost = old })
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Parse("/d", "/d/main.cf", data)
		c.Check()
		for _, s := range c.Settings() {
			c.Get(s.Name)
			c.List(s.Name)
		}
		c.TableRefs()
	})
}

// Stress mode: Postfix's master(8) starts smtpd with "-o stress=yes" once
// the service has reached its process limit, and every value written
// ${stress?{a}:{b}}, default or not, switches. Expected values are
// `postconf -xh NAME` and `postconf -o stress=yes -xh NAME` of Postfix
// 3.7 for the same main.cf.
func TestStressed(t *testing.T) {
	c := parse(t, "smtpd_soft_error_limit = ${stress?{2}:{10}}\nsmtpd_timeout = ${stress?{5}:{60}}s\n")
	st := c.Stressed()
	for _, tc := range []struct{ name, normal, stress string }{
		{"smtpd_timeout", "60s", "5s"},
		{"smtpd_hard_error_limit", "20", "1"},
		{"smtpd_junk_command_limit", "100", "1"},
		{"smtpd_soft_error_limit", "10", "2"},
		{"smtpd_starttls_timeout", "300s", "10s"},
		{"smtpd_error_sleep_time", "1s", "1s"},
	} {
		if got := c.Get(tc.name); got != tc.normal {
			t.Errorf("%s = %q, want %q", tc.name, got, tc.normal)
		}
		if got := st.Get(tc.name); got != tc.stress {
			t.Errorf("%s in stress mode = %q, want %q", tc.name, got, tc.stress)
		}
	}
	if d, err := st.Duration("smtpd_timeout"); err != nil || d != 5*time.Second {
		t.Errorf("smtpd_timeout in stress mode: %v, %v", d, err)
	}
	if _, ok := c.Set("stress"); ok {
		t.Errorf("Stressed changed the configuration it was made from")
	}
}

// A bad value is found whichever mode it belongs to, and the limits whose
// default is a ${stress?...} expression are checked as numbers.
func TestCheckStressValues(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"smtpd_hard_error_limit = many\n", "smtpd_hard_error_limit = many: expected a number"},
		{"smtpd_junk_command_limit = ${stress?{x}:{100}}\n", "expected a number (in stress mode)"},
		{"smtpd_timeout = ${stress?{10q}:{5s}}\n", "bad time unit 'q': expected s, m, h, d or w (in stress mode)"},
		{"smtpd_client_message_rate_limit = ten\n", "expected a number"},
		{"anvil_rate_time_unit = 5 minutes\n", "anvil_rate_time_unit"},
		{"smtpd_client_event_limit_exceptions = 10.0.0.1/8\n", "non-null host address bits"},
		{"stress = no\n", `"no" not supported`},
	} {
		d := parse(t, tc.text).Check()
		if len(diagsMatching(d, tc.want)) != 1 || !d.HasErrors() {
			t.Errorf("%q: want one error %q, got %v", tc.text, tc.want, d)
		}
	}
	ok := parse(t, `smtpd_junk_command_limit = ${stress?{1}:{50}}
smtpd_client_connection_rate_limit = 30
smtpd_client_message_rate_limit = 20
smtpd_client_recipient_rate_limit = 200
anvil_rate_time_unit = 2s
smtpd_client_event_limit_exceptions = $mynetworks, 192.0.2.0/24
default_process_limit = 10
smtpd_error_sleep_time = 0s
`).Check()
	if len(ok) != 0 {
		t.Errorf("good limits: %v", ok)
	}
	if d := parse(t, "smtpd_client_new_tls_session_rate_limit = 10\n").Check(); d.HasErrors() || len(diagsMatching(d, "not implemented")) != 1 {
		t.Errorf("smtpd_client_new_tls_session_rate_limit: want a warning, got %v", d)
	}
}

// relay_domains without relay_recipient_maps accepts every address in
// those domains, and bounces to (forged) senders what the next hop
// refuses: check warns at the relay_domains line. Not for Postfix's
// compatibility default relay_domains = $mydestination (local domains),
// nor when relay_recipient_maps is set or relay_domains empty.
func TestRelayDomainsWithoutRecipientMaps(t *testing.T) {
	for _, tc := range []struct {
		mainCf string
		line   int // 0: no warning
	}{
		{"myhostname = mx.example.com\nrelay_domains = relay.example\n", 2},
		{"relay_domains = relay.example\nrelay_recipient_maps = inline:{ a@relay.example=OK }\n", 0},
		{"relay_domains =\n", 0},
		{"compatibility_level = 0\n", 0},
	} {
		d := diagsMatching(parse(t, tc.mainCf).Check(), "relay_recipient_maps is empty")
		switch {
		case tc.line == 0 && len(d) != 0:
			t.Errorf("%q: unexpected %v", tc.mainCf, d)
		case tc.line != 0 && (len(d) != 1 || d[0].Line != tc.line || d[0].Severity != diag.Warning || !strings.Contains(d[0].Msg, "backscatter")):
			t.Errorf("%q: want one backscatter warning on line %d, got %v", tc.mainCf, tc.line, d)
		}
	}
}

// A domain in two address classes: resolve.c warns at each lookup and
// takes the first class in its order; check says so at the second
// listing's line. Tables are looked up at run time: not compared.
func TestDomainInTwoClasses(t *testing.T) {
	for _, tc := range []struct {
		mainCf string
		want   []string // the warnings' "BOTH a and b" parts, in order
		line   int      // of the first warning
	}{
		{"mydestination = mx.example.com, Users.Example.\nvirtual_mailbox_domains = users.example\nvirtual_transport = lmtp:inet:127.0.0.1:24\n",
			[]string{"users.example in BOTH mydestination and virtual_mailbox_domains"}, 2},
		{"virtual_alias_domains = a.example\nrelay_domains = a.example, b.example\nvirtual_mailbox_domains = b.example\nvirtual_transport = lmtp:inet:127.0.0.1:24\n",
			[]string{"a.example in BOTH virtual_alias_domains and relay_domains", "b.example in BOTH virtual_mailbox_domains and relay_domains"}, 2},
		{"virtual_mailbox_domains = users.example, users.example\nvirtual_transport = lmtp:inet:127.0.0.1:24\n", nil, 0},
		{"mydestination = mx.example.com\nrelay_domains = $mydestination\n", nil, 0},
		{"mydestination = inline:{ users.example=x }\nvirtual_mailbox_domains = users.example\nvirtual_transport = lmtp:inet:127.0.0.1:24\n", nil, 0},
	} {
		d := diagsMatching(parse(t, tc.mainCf).Check(), "in BOTH")
		var got []string
		for _, x := range d {
			_, after, _ := strings.Cut(x.Msg, "domain ")
			part, _, _ := strings.Cut(after, ":")
			got = append(got, part)
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(d) > 0 && (d[0].Line != tc.line || d[0].Severity != diag.Warning) {
			t.Errorf("%q: got %v, want %q at line %d", tc.mainCf, d, tc.want, tc.line)
		}
	}
}

// bounce_size_limit: Postfix's bounce(8) takes at least 1.
func TestBounceSizeLimit(t *testing.T) {
	if d := parse(t, "bounce_size_limit = 1000\n").Check(); d.HasErrors() {
		t.Errorf("bounce_size_limit = 1000: %v", d)
	}
	if d := diagsMatching(parse(t, "bounce_size_limit = 0\n").Check(), "invalid bounce_size_limit parameter value 0 < 1"); len(d) != 1 || d[0].Severity != diag.Error {
		t.Errorf("bounce_size_limit = 0: %v", d)
	}
}

// The value checks added for the bad-configuration suite must not refuse
// what Postfix (and serve) accept.
func TestGoodValuesPass(t *testing.T) {
	for _, line := range []string{
		"masquerade_classes = envelope_sender, header_sender, header_recipient",
		"propagate_unmatched_extensions =",
		"notify_classes = bounce, 2bounce, delay, resource, software",
		"parent_domain_matches_subdomains = mydestination, relay_domains, smtpd_access_maps",
		"myhostname = mx_1.example.com",
		"myorigin = /etc/mailname",
		"smtpd_port = 2525",
		"smtp_tcp_port = smtp",
		"relayhost = [127.0.0.1]:2525",
		"relayhost = [ipv6:::1]:25",
		"relayhost = [relay.example], mail.example:25",
		"inet_interfaces = [::1], 127.0.0.1, localhost, mx.example",
		"smtp_bind_address = 192.0.2.1",
		"smtp_bind_address6 = 2001:db8::1",
		"dns_servers = 127.0.0.1:53, [::1]:5353",
		"bounce_notice_recipient = postmaster",
		"2bounce_notice_recipient = admin@example.com",
		"empty_address_recipient = MAILER-DAEMON",
		"masquerade_domains = !sub.example.com, example.com",
		"masquerade_exceptions = root, mailer-daemon",
		"recipient_delimiter = +-",
		"unknown_local_recipient_reject_code = 450",
		"default_database_type = texthash",
		"inet_protocols = ipv4, ipv6",
	} {
		if d := parse(t, "mynetworks = 127.0.0.0/8\n"+line+"\n").Check(); d.HasErrors() {
			t.Errorf("%q: want no error, got %v", line, d)
		}
	}
}

func TestForwardPathChecked(t *testing.T) {
	for v, want := range map[string]string{
		"$home/.forward${recipient_delimiter}${extension}, $home/.forward": "",
		"/var/forward/$user, ${home}/.forward":                             "",
		"$home/.forward, $homedir/.forward":                                "$homedir is none of local(8)'s attributes",
		".forward":                                                         "not an absolute path",
		"$home/.forward${extension":                                        "forward_path",
	} {
		err := parse(t, "forward_path = "+v+"\n").Check().Err()
		switch {
		case want == "" && err != nil:
			t.Errorf("%q: %v", v, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: got %v, want %q", v, err, want)
		}
	}
}
