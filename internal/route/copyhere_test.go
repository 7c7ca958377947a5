package route

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/envelope"
)

// A copy_transport that is local_transport's LMTP (Dovecot's socket,
// the mailbox store of this host) delivers the copy here, into the
// mailbox that already has the message: deferred, and an error in
// check, as copy_transport = local is. An LMTP next hop that is a unix
// socket is on this host whatever local_transport says.
func TestCopyTransportLocalLMTP(t *testing.T) {
	for _, c := range []struct{ local, copy string }{
		{"lmtp:unix:private/dovecot-lmtp", "lmtp:unix:private/dovecot-lmtp"},
		{"local", "lmtp:unix:/run/dovecot/lmtp"},
		{"lmtp:[127.0.0.1]:24", "lmtp:[127.0.0.1]:24"},
	} {
		r := Router{Local: domains(t, false, "x.example"), LocalTransport: c.local, CopyTransport: c.copy}
		_, ok, err := r.CopyRoute(context.Background(), envelope.Rcpt{Addr: "a@y.example", Copy: true, Migration: envelope.MigrationCopy})
		var ce *CopyError
		if !ok || !errors.As(err, &ce) || !strings.Contains(err.Error(), "delivers on this host") {
			t.Errorf("local_transport = %s, copy_transport = %s: ok %v, err %v; want a deferral", c.local, c.copy, ok, err)
		}
		d := r.CheckCopies(context.Background(), "main.cf", 9, []string{"lmtp", "local", "smtp"}, nil, nil)
		if len(d) != 1 || d[0].Severity != diag.Error || d[0].Line != 9 || !strings.Contains(d[0].Msg, "delivers on this host") {
			t.Errorf("local_transport = %s, copy_transport = %s: check: %v", c.local, c.copy, d)
		}
	}
	// LMTP to another host is not this host's delivery.
	r := Router{Local: domains(t, false, "x.example"), LocalTransport: "lmtp:unix:private/dovecot-lmtp", CopyTransport: "lmtp:[10.1.2.3]:24"}
	if hop, ok, err := r.CopyRoute(context.Background(), envelope.Rcpt{Addr: "a@y.example", Migration: envelope.MigrationCopy}); !ok || err != nil || hop.Nexthop != "[10.1.2.3]:24" {
		t.Errorf("lmtp to another host: %v %v %v", hop, ok, err)
	}
}
