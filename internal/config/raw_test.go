package config

import (
	"testing"

	"github.com/mailtee/mailtee/internal/diag"
)

// Issue 13, defect 9: the run-time macros of local(8) and smtpd(8) were
// expanded to nothing, with an "undefined parameter" warning. Postfix
// 3.7's `postconf -x` shows these parameters as written:
//
//	mailbox_command = /usr/bin/procmail -a "$EXTENSION"
//	default_rbl_reply = $rbl_code Blocked; see $rbl_reason ($client_address)
//
// Another parameter that refers to one expands it, in Postfix 3.7 as in
// other values (Postfix 3.12's postconf leaves it as written there).
func TestRawParameters(t *testing.T) {
	c := parse(t, "mailbox_command = /usr/bin/procmail -a \"$EXTENSION\" -d $user\n"+
		"forward_path = $home/.forward${recipient_delimiter}${extension}, $home/.forward\n"+
		"luser_relay = $local@other.example\n"+
		"default_rbl_reply = $rbl_code Blocked; see $rbl_reason ($client_address)\n"+
		"smtpd_reject_footer = \\c. Contact $postmaster_address for $client_address\n"+
		"mail_name = [$mailbox_command]\n")
	for _, d := range c.Check() {
		if diagsMatching(diag.List{d}, "undefined parameter") != nil && d.Line != 6 {
			t.Errorf("unexpected finding: %v", d)
		}
	}
	for name, want := range map[string]string{
		"mailbox_command":     "/usr/bin/procmail -a \"$EXTENSION\" -d $user",
		"luser_relay":         "$local@other.example",
		"default_rbl_reply":   "$rbl_code Blocked; see $rbl_reason ($client_address)",
		"smtpd_reject_footer": "\\c. Contact $postmaster_address for $client_address",
		"mail_name":           "[/usr/bin/procmail -a \"\" -d ]",
	} {
		if got := c.Get(name); got != want {
			t.Errorf("Get(%s) = %q, want %q", name, got, want)
		}
	}
	if v, _ := c.Default("postscreen_reject_footer"); c.Get("postscreen_reject_footer") != v {
		t.Errorf("postscreen_reject_footer = %q, want its default as written, %q", c.Get("postscreen_reject_footer"), v)
	}
	// Postfix takes no $name of a raw parameter for a user-defined one.
	c = parse(t, "mailbox_command = /bin/cmd $EXTENSION\nEXTENSION = x\n")
	if len(diagsMatching(c.Check(), "EXTENSION: unknown parameter")) != 1 {
		t.Errorf("EXTENSION became a user-defined parameter: %v", c.Check())
	}
}
