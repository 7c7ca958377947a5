package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 13, defect 6: a mysql: table in virtual_alias_maps was reported
// under virtual_alias_domains (whose default is $virtual_alias_maps),
// without a line. It is reported once, under the line that names it.
func TestCheckCreditsTableToItsParameter(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = h.example.com\nalias_maps =\nvirtual_alias_maps = mysql:/etc/postfix/virtual.cf\n"), 0o644)
	code, out, _ := mailtee(t, "", "check", "-c", dir)
	want := "main.cf, line 3: virtual_alias_maps: unsupported table type \"mysql\""
	if code != exitBadData || strings.Count(out, want) != 1 || strings.Contains(out, "virtual_alias_domains") || strings.Count(out, "mysql") != 1 {
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
