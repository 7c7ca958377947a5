package route

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/queue"
)

// One box (issue 18): copy_transport routes every recipient the
// migration layer made, even one in a local domain; without it a copy
// is routed like any address, but never delivered here.
func TestCopyRoute(t *testing.T) {
	ctx := context.Background()
	base := Router{
		Local:          domains(t, false, "students.iiit.ac.in", "localhost"),
		LocalTransport: "local:students.iiit.ac.in",
		TransportMaps:  openTable(t, "hash", "relay.students.iiit.ac.in  smtp:[127.0.0.11]\nlmtp.students.iiit.ac.in  local\n"),
	}
	one := base
	one.CopyTransport = "smtp:[aspmx.l.google.com]"
	bare := base
	bare.CopyTransport = "google:"
	withPort := base
	withPort.CopyTransport = "relay:[relay.x]:25"
	dovecot := base
	dovecot.LocalTransport = "lmtp:unix:private/dovecot-lmtp"
	copyOf := func(a string) envelope.Rcpt {
		return envelope.Rcpt{Addr: a, Copy: true, Migration: envelope.MigrationCopy}
	}
	fwd := envelope.Rcpt{Addr: "user1@students.iiit.ac.in", Migration: envelope.MigrationForward}
	for _, c := range []struct {
		name    string
		r       Router
		rcpt    envelope.Rcpt
		want    envelope.Hop
		ok      bool
		errWant string
	}{
		{"ordinary recipient: Route decides", one, envelope.Rcpt{Addr: "user1@students.iiit.ac.in"}, envelope.Hop{}, false, ""},
		{"always_bcc copy keeps Migration empty", one, envelope.Rcpt{Addr: "user1@students.iiit.ac.in", Copy: true}, envelope.Hop{}, false, ""},
		{"copy in a local domain leaves by copy_transport", one, copyOf("user1@students.iiit.ac.in"), envelope.Hop{Transport: "smtp", Nexthop: "[aspmx.l.google.com]"}, true, ""},
		{"forward phase too", one, fwd, envelope.Hop{Transport: "smtp", Nexthop: "[aspmx.l.google.com]"}, true, ""},
		{"empty next hop is the recipient's domain", bare, copyOf("User1@Students.IIIT.ac.in"), envelope.Hop{Transport: "google", Nexthop: "students.iiit.ac.in"}, true, ""},
		{"next hop with a port", withPort, copyOf("user1@students.iiit.ac.in"), envelope.Hop{Transport: "relay", Nexthop: "[relay.x]:25"}, true, ""},
		{"no copy_transport: the seed's relay address", base, copyOf("user1@relay.students.iiit.ac.in"), envelope.Hop{Transport: "smtp", Nexthop: "[127.0.0.11]"}, true, ""},
		{"no copy_transport: a remote address", base, copyOf("user1@gmail.example"), envelope.Hop{Transport: "smtp", Nexthop: "gmail.example"}, true, ""},
		{"no copy_transport: local domain is deferred", base, copyOf("user1@students.iiit.ac.in"), envelope.Hop{}, true, "set copy_transport"},
		{"no copy_transport: transport_maps to local is deferred", base, copyOf("u@lmtp.students.iiit.ac.in"), envelope.Hop{}, true, "set copy_transport"},
		{"no copy_transport: local_transport over LMTP is deferred", dovecot, copyOf("user1@students.iiit.ac.in"), envelope.Hop{}, true, "never delivered here"},
		{"no copy_transport: forward phase in a local domain", base, fwd, envelope.Hop{}, true, "dual_delivery_phase = forward"},
	} {
		t.Run(c.name, func(t *testing.T) {
			hop, ok, err := c.r.CopyRoute(ctx, c.rcpt)
			if c.errWant != "" {
				var ce *CopyError
				if !errors.As(err, &ce) || !strings.Contains(err.Error(), c.errWant) || !ok {
					t.Fatalf("CopyRoute(%v) = %v, %v, %v; want a CopyError saying %q", c.rcpt, hop, ok, err, c.errWant)
				}
				// Deferred, never bounced: the mail waits for the fix.
				if queue.IsPermanent(err) || queue.DSN(err) != "4.3.5" {
					t.Errorf("the error is permanent=%v, dsn %s; want a 4.3.5 deferral", queue.IsPermanent(err), queue.DSN(err))
				}
				return
			}
			if err != nil || ok != c.ok || hop != c.want {
				t.Errorf("CopyRoute(%v) = %v, %v, %v; want %v, %v", c.rcpt, hop, ok, err, c.want, c.ok)
			}
		})
	}
}

// A copy_transport that delivers on this host (local, or a master.cf
// service running local(8)) would loop the copy into the mailbox: it is
// deferred, and check calls it an error.
func TestCopyTransportHere(t *testing.T) {
	r := Router{Local: domains(t, false, "x.example"), CopyTransport: "mybox:", Here: func(tr string) bool { return tr == "mybox" }}
	_, ok, err := r.CopyRoute(context.Background(), envelope.Rcpt{Addr: "a@y.example", Migration: envelope.MigrationCopy})
	if !ok || err == nil || !strings.Contains(err.Error(), "delivers on this host") {
		t.Errorf("copy_transport to a local service: ok %v, err %v; want a deferral", ok, err)
	}
	d := r.CheckCopies(context.Background(), "main.cf", 9, []string{"mybox", "smtp"}, nil, nil)
	if len(d) != 1 || d[0].Severity != diag.Error || d[0].Line != 9 || !strings.Contains(d[0].Msg, "delivers on this host") {
		t.Errorf("check: %v", d)
	}
}

func TestCheckCopies(t *testing.T) {
	ctx := context.Background()
	known := []string{"discard", "error", "google", "lmtp", "local", "relay", "smtp"}
	bcc := openTable(t, "hash", "# the one box's map\nuser1:  user1@students.iiit.ac.in\nuser2:  user2@relay.students.iiit.ac.in\nuser3:  user3, user3@gmail.example\n")
	re := openTable(t, "regexp", "/^(.*)@students\\.iiit\\.ac\\.in$/  $1@students.iiit.ac.in\n")
	r := Router{Local: domains(t, false, "students.iiit.ac.in", "localhost")}
	tables := []CopyMap{{Param: "mailbox_bcc_maps", Spec: "hash:B", Line: 4, Table: bcc}, {Param: "recipient_bcc_maps", Spec: "regexp:R", Line: 5, Table: re}}
	complete := func(l string) string { return l + "@students.iiit.ac.in" }
	got := r.CheckCopies(ctx, "main.cf", 0, known, tables, complete)
	// user1 (line 2) and the bare user3 (line 4) are local: warned, each
	// at its table's line; the relay's and gmail's addresses are not;
	// the regexp's result is built from $1, unknown to check.
	if len(got) != 2 {
		t.Fatalf("got %d findings, want 2:\n%v", len(got), got)
	}
	for i, w := range []struct {
		line int
		addr string
	}{{2, "user1@students.iiit.ac.in"}, {4, "user3@students.iiit.ac.in"}} {
		d := got[i]
		if d.Severity != diag.Warning || filepath.Base(d.File) != "transport" || d.Line != w.line ||
			!strings.Contains(d.Msg, w.addr) || !strings.Contains(d.Msg, "set copy_transport") || !strings.Contains(d.Msg, "mailbox_bcc_maps (hash:B)") {
			t.Errorf("finding %d = %v; want a warning at line %d about %s", i, d, w.line, w.addr)
		}
	}
	// With copy_transport set the copies are routed away: no warning;
	// the transport itself is checked.
	for _, c := range []struct {
		value, want string
	}{
		{"smtp:[aspmx.l.google.com]", ""},
		{"google:", "warning: has no next hop"},
		{"gogle:", `unknown mail transport "gogle"; mailtee delivers with discard, error, google, lmtp, local, relay, smtp, and mail for it would wait in the queue; did you mean google?`},
		{":[aspmx.l.google.com]", "null transport"},
		{"local:", "delivers on this host"},
	} {
		r := r
		r.CopyTransport = c.value
		d := r.CheckCopies(ctx, "main.cf", 7, known, tables, complete)
		if c.want == "" {
			if len(d) != 0 {
				t.Errorf("copy_transport = %s: %v, want no finding", c.value, d)
			}
			continue
		}
		// An empty next hop sends a copy in a local domain to that
		// domain's MX: this host, during a migration.
		if w, ok := strings.CutPrefix(c.want, "warning: "); ok {
			if len(d) != 1 || d[0].Severity != diag.Warning || d[0].Line != 7 || !strings.Contains(d[0].Msg, w) || !strings.Contains(d[0].Msg, "students.iiit.ac.in's MX") {
				t.Errorf("copy_transport = %s: %v, want a warning at line 7 saying %q", c.value, d, w)
			}
			continue
		}
		if len(d) != 1 || d[0].Severity != diag.Error || d[0].Line != 7 || d[0].File != "main.cf" || !strings.Contains(d[0].Msg, c.want) {
			t.Errorf("copy_transport = %s: %v, want an error at main.cf line 7 saying %q", c.value, d, c.want)
		}
	}
}

// CopyRoute and CheckCopies never panic, whatever copy_transport, the
// recipient and the copy map say; a recipient of the migration layer is
// always CopyRoute's to decide, and one it routes has a transport.
func FuzzCopyRoute(f *testing.F) {
	f.Add("smtp:[aspmx.l.google.com]", "user1@students.iiit.ac.in", "copy", "user1@students.iiit.ac.in")
	f.Add("google:", "User1@Students.IIIT.ac.in.", "forward", "user1, <user2@students.iiit.ac.in>")
	f.Add("", "user1", "copy", "user1@relay.students.iiit.ac.in")
	f.Add(":[x]:25", "@", "", "a,,b c")
	f.Add("local", "u@[127.0.0.1]", "copy", "")
	f.Fuzz(func(t *testing.T, transport, addr, migration, value string) {
		ctx := context.Background()
		local, err := maps.NewDomainList([]string{"students.iiit.ac.in", "localhost"}, false)
		if err != nil {
			t.Fatal(err)
		}
		r := Router{Local: local, CopyTransport: transport}
		hop, ok, err := r.CopyRoute(ctx, envelope.Rcpt{Addr: addr, Migration: migration})
		if migration != "" && !ok {
			t.Errorf("CopyRoute(%q, %q) left a %s recipient to Route", transport, addr, migration)
		}
		if ok && err == nil && (hop.Transport == "" || r.deliversHere(hop.Transport)) {
			t.Errorf("CopyRoute(%q, %q) = %+v: no transport, or one that delivers here", transport, addr, hop)
		}
		tb, _, err := maps.Open("inline:{ user1=" + value + " }")
		if err != nil {
			return
		}
		r.CheckCopies(ctx, "main.cf", 1, []string{"smtp", "local"}, []CopyMap{{Param: "mailbox_bcc_maps", Spec: "inline", Line: 2, Table: tb}},
			func(l string) string { return l + "@students.iiit.ac.in" })
	})
}
