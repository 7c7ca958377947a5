package dsn

import (
	"strings"
	"testing"
)

// The client's DSN parameters show in the report as Postfix's
// bounce_notify_util.c writes them: ENVID as Original-Envelope-Id, ORCPT
// as Original-Recipient (verbatim, in preference to the address before
// rewriting), and RET=HDRS returns the header section only.
func TestBuildDSNParameters(t *testing.T) {
	r := bounce()
	r.EnvID = "env+42"
	r.HeadersOnly = true
	r.Recipients[0].ORcpt = "rfc822;orig-d1@client.test"
	raw, err := Build(r, now, "id@x")
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, raw)
	status := string(p.bodies[1])
	if !strings.Contains(status, "Reporting-MTA: dns; students.iiit.ac.in\r\nOriginal-Envelope-Id: env+42\r\n") {
		t.Errorf("per-message fields:\n%s", status)
	}
	if !strings.Contains(status, "\r\nOriginal-Recipient: rfc822;orig-d1@client.test\r\n") {
		t.Errorf("per-recipient fields:\n%s", status)
	}
	if ct := p.parts[2].Header.Get("Content-Type"); ct != "text/rfc822-headers" || strings.Contains(string(p.bodies[2]), "Monday") {
		t.Errorf("RET=HDRS: %q\n%s", ct, p.bodies[2])
	}
}
