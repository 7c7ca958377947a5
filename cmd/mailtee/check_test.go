package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 13, defect 6: a mysql: table (ldap: since mailtee reads mysql:)
// in virtual_alias_maps was reported
// under virtual_alias_domains (whose default is $virtual_alias_maps),
// without a line. It is reported once, under the line that names it.
func TestCheckCreditsTableToItsParameter(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = h.example.com\nalias_maps =\nvirtual_alias_maps = ldap:/etc/postfix/virtual.cf\n"), 0o644)
	code, out, _ := mailtee(t, "", "check", "-c", dir)
	want := "main.cf, line 3: virtual_alias_maps: unsupported table type \"ldap\""
	if code != exitBadData || strings.Count(out, want) != 1 || strings.Contains(out, "virtual_alias_domains") || strings.Count(out, "ldap") != 1 {
		t.Errorf("exit %d; want 1 and %q once, nothing else about it:\n%s", code, want, out)
	}
}

// Issue 13, defect 9: postconf -x leaves local(8)'s and smtpd(8)'s
// run-time macros as written, as Postfix 3.7's postconf -x does, and
// warns about none of them.
func TestPostconfRawParameters(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = h.example.com\nmailbox_command = /usr/bin/procmail -a \"$EXTENSION\"\ndefault_rbl_reply = $rbl_code Blocked; see $rbl_reason\n"), 0o644)
	code, out, errs := mailtee(t, "", "postconf", "-c", dir, "-x", "mailbox_command", "default_rbl_reply", "forward_path", "myhostname")
	want := "mailbox_command = /usr/bin/procmail -a \"$EXTENSION\"\n" +
		"default_rbl_reply = $rbl_code Blocked; see $rbl_reason\n" +
		"forward_path = $home/.forward${recipient_delimiter}${extension}, $home/.forward\n" +
		"myhostname = h.example.com\n"
	if code != exitOK || out != want || errs != "" {
		t.Errorf("exit %d, stderr %q, out:\n%s\nwant:\n%s", code, errs, out, want)
	}
	_, out, _ = mailtee(t, "", "check", "-c", dir)
	if strings.Contains(out, "undefined parameter") {
		t.Errorf("check warns about a run-time macro:\n%s", out)
	}
}

// Issue 13, defect 7: a relative LMTP socket is under Postfix's queue
// directory for this main.cf: postfix_queue_directory, which defaults to
// queue_directory when main.cf sets it, else /var/spool/postfix. check
// says which path serve uses, and warns when no socket is there.
func TestCheckLMTPSocket(t *testing.T) {
	dir := t.TempDir()
	pq := filepath.Join(dir, "pq")
	os.MkdirAll(filepath.Join(pq, "private"), 0o755)
	cf := "myhostname = h.example.com\nalias_maps =\nmailbox_transport = lmtp:unix:private/dovecot-lmtp\n"
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf+"queue_directory = "+pq+"\n"), 0o644)
	sock := filepath.Join(pq, "private", "dovecot-lmtp")
	info := "main.cf, line 3: mailbox_transport: lmtp socket private/dovecot-lmtp is " + sock
	_, out, _ := mailtee(t, "", "check", "-c", dir)
	if !strings.Contains(out, info) || !strings.Contains(out, "warning: "+dir+"/main.cf, line 3: mailbox_transport: lmtp socket "+sock+" does not exist") {
		t.Errorf("check output lacks the path or the warning:\n%s", out)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, out, _ = mailtee(t, "", "check", "-c", dir)
	if !strings.Contains(out, info) || !strings.Contains(out, "0 warning(s)") {
		t.Errorf("with the socket there:\n%s", out)
	}
	// Without queue_directory, Postfix's default.
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o644)
	if _, out, _ = mailtee(t, "", "check", "-c", dir); !strings.Contains(out, "lmtp socket private/dovecot-lmtp is /var/spool/postfix/private/dovecot-lmtp") {
		t.Errorf("without queue_directory:\n%s", out)
	}
	// postfix_queue_directory says it when mailtee's spool is elsewhere.
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf+"queue_directory = "+dir+"/spool\npostfix_queue_directory = "+pq+"\n"), 0o644)
	if _, out, _ = mailtee(t, "", "check", "-c", dir); !strings.Contains(out, info) || !strings.Contains(out, "0 warning(s)") {
		t.Errorf("with postfix_queue_directory:\n%s", out)
	}
}

// Issue 13, defect 1: what serve refuses, check refuses, naming the
// file, line and parameter. always_bcc = a b c @@ passed check (exit 0)
// and then failed every message with a 451; a typo in a class list was
// ignored without a word.
func TestCheckRefusesWhatServeRefuses(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"always_bcc = a b c @@", "main.cf, line 2: always_bcc: non-address result"},
		{"masquerade_classes = envelope_sendr", `main.cf, line 2: masquerade_classes: "envelope_sendr" not supported`},
		{"sender_canonical_classes = envelope_recipient", `main.cf, line 2: sender_canonical_classes: "envelope_recipient" not supported`},
	} {
		dir := t.TempDir()
		q := filepath.Join(dir, "queue")
		os.WriteFile(filepath.Join(dir, "main.cf"), []byte("queue_directory = "+q+"\n"+tc.line+"\nsmtpd_port = 2525\ninet_interfaces = loopback-only\n"), 0o644)
		code, out, _ := mailtee(t, "", "check", "-c", dir)
		if code != exitBadData || !strings.Contains(out, tc.want) {
			t.Errorf("check with %q: exit %d, want 1 and %q in:\n%s", tc.line, code, tc.want, out)
		}
		code, _, errs := mailtee(t, "", "serve", "-c", dir)
		if code != exitBadData || !strings.Contains(errs, tc.want) {
			t.Errorf("serve with %q: exit %d, want 1 and %q in:\n%s", tc.line, code, tc.want, errs)
		}
	}
}

// A setgid_group the administrator names and this system lacks leaves
// sendmail to root: check says so (serve says it again at start).
func TestCheckSetgidGroupMissing(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("alias_maps =\nsetgid_group = nosuchgroup-mailtee\n"), 0o644)
	code, out, _ := mailtee(t, "", "check", "-c", dir)
	if code != exitOK || !strings.Contains(out, "line 2: setgid_group:") || !strings.Contains(out, "groupadd --system nosuchgroup-mailtee") {
		t.Errorf("exit %d, want 0 and a warning about the group:\n%s", code, out)
	}
}
