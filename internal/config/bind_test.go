package config

import (
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/diag"
)

// TRANSPORT_bind_address (issue 18): a master.cf smtp or lmtp service's
// own source address, defaulting to its program's; validated as
// smtp_bind_address is; a name no such service has stays unknown.
func TestTransportBindAddress(t *testing.T) {
	c := parse(t, "smtp_bind_address = 127.0.0.2\nlmtp_bind_address6 = ::2\ngoogle_bind_address = 127.0.0.7\nbad_bind_address = ::1\nbad_bind_address6 = 127.0.0.1\nfilter_bind_address = 127.0.0.1\n")
	c.SetMasterNames([]MasterService{{"google", "unix", "smtp"}, {"dove", "unix", "lmtp"}, {"bad", "unix", "smtp"}, {"filter", "unix", "pipe"}}, nil)
	for _, tc := range []struct {
		transport, program string
		six                bool
		want               string
	}{
		{"google", "smtp", false, "127.0.0.7"},
		{"google", "smtp", true, ""},
		{"dove", "lmtp", true, "::2"},
		{"dove", "lmtp", false, ""},
		{"relay", "smtp", false, "127.0.0.2"},
		{"smtp", "smtp", false, "127.0.0.2"},
	} {
		if got := c.BindAddress(tc.transport, tc.program, tc.six); got != tc.want {
			t.Errorf("BindAddress(%s, %s, %v) = %q, want %q", tc.transport, tc.program, tc.six, got, tc.want)
		}
	}
	d := c.Check()
	for _, w := range []struct {
		line int
		text string
	}{
		{4, `bad_bind_address: "::1": not an IPv4 address`},
		{5, `bad_bind_address6: "127.0.0.1": not an IPv6 address`},
	} {
		if f := diagsMatching(d, strings.Fields(w.text)[0]); len(f) != 1 || f[0].Severity != diag.Error || f[0].Line != w.line || !strings.Contains(f[0].Msg, w.text) {
			t.Errorf("%s: %v, want an error at line %d", w.text, f, w.line)
		}
	}
	// A pipe service has no client to bind: ignored, and check says so.
	if f := diagsMatching(d, "filter_bind_address"); len(f) != 1 || f[0].Severity != diag.Warning || !strings.Contains(f[0].Msg, "ignored") {
		t.Errorf("filter_bind_address: %v, want a warning that it is ignored", f)
	}
	if f := diagsMatching(d, "google_bind_address"); len(f) != 0 {
		t.Errorf("google_bind_address: %v, want none", f)
	}
}

// mailtee's pacing parameters for a master.cf service, set in main.cf
// (google_destination_rate_limit), are honoured (internal/master reads
// and checks them): check must not call them ignored.
func TestServicePacingNotIgnored(t *testing.T) {
	c := parse(t, "google_destination_rate_limit = 60/1m\ngoogle_destination_profile = google\n")
	c.SetMasterNames([]MasterService{{"google", "unix", "smtp"}}, nil)
	if d := c.Check(); len(d) != 0 {
		t.Errorf("findings %v, want none", d)
	}
}
