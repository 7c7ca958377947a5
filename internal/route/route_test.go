package route

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maps"
)

func openTable(t *testing.T, typ, text string) maps.Table {
	t.Helper()
	file := filepath.Join(t.TempDir(), "transport")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	tb, _, err := maps.Open(typ + ":" + file)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func domains(t *testing.T, parent bool, elems ...string) *maps.DomainList {
	t.Helper()
	l, err := maps.NewDomainList(elems, parent)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// The address classes of trivial-rewrite(8) and the next hop each gets
// (resolve.c), without transport_maps.
func TestRouteClasses(t *testing.T) {
	base := Router{
		Local:          domains(t, false, "mail.example", "localhost"),
		Relay:          domains(t, true, "relayed.example"),
		LocalTransport: "local:mail.example",
		Delimiter:      "+",
	}
	withRelayhost := base
	withRelayhost.Relayhost = "[smtp.isp.example]:587"
	ownNexthop := withRelayhost
	ownNexthop.RelayTransport = "relay:[internal.example]"
	// A PostfixAdmin site: its domains' mailboxes are Dovecot's, over
	// LMTP; a domain in both lists is the virtual mailbox one (resolve.c
	// asks virtual_mailbox_domains before relay_domains).
	dovecot := withRelayhost
	dovecot.VirtualMailbox = domains(t, false, "users.example", "relayed.example")
	dovecot.VirtualTransport = "lmtp:unix:private/dovecot-lmtp"
	defaultVirtual := base
	defaultVirtual.VirtualMailbox = domains(t, false, "users.example")

	for _, c := range []struct {
		name string
		r    Router
		rcpt string
		want envelope.Hop
	}{
		// "local_transport = local:$myhostname": the explicit next hop
		// makes every local domain share one queue.
		{"local", base, "user@mail.example", envelope.Hop{Transport: "local", Nexthop: "mail.example"}},
		{"local case", base, "User@MAIL.Example.", envelope.Hop{Transport: "local", Nexthop: "mail.example"}},
		{"bare local part", base, "postmaster", envelope.Hop{Transport: "local", Nexthop: "mail.example"}},
		// relay_domains, with parent_domain_matches_subdomains naming it.
		{"relay", base, "a@relayed.example", envelope.Hop{Transport: "relay", Nexthop: "relayed.example"}},
		{"relay subdomain", base, "a@sub.relayed.example", envelope.Hop{Transport: "relay", Nexthop: "sub.relayed.example"}},
		{"default", base, "a@elsewhere.example", envelope.Hop{Transport: "smtp", Nexthop: "elsewhere.example"}},
		// postconf(5) relayhost: "the default host to send mail to when
		// no entry is matched in the optional transport(5) table" — for
		// the relay and the default class alike (resolve.c: "With
		// off-host delivery, ... global relayhost override the recipient
		// domain").
		{"relayhost default", withRelayhost, "a@elsewhere.example", envelope.Hop{Transport: "smtp", Nexthop: "[smtp.isp.example]:587"}},
		{"relayhost relay", withRelayhost, "a@relayed.example", envelope.Hop{Transport: "relay", Nexthop: "[smtp.isp.example]:587"}},
		{"relayhost not local", withRelayhost, "a@mail.example", envelope.Hop{Transport: "local", Nexthop: "mail.example"}},
		// "An explicit main.cf transport:nexthop setting overrides the
		// nexthop", relayhost included.
		{"transport nexthop beats relayhost", ownNexthop, "a@relayed.example", envelope.Hop{Transport: "relay", Nexthop: "[internal.example]"}},
		// virtual_mailbox_domains: virtual_transport, relayhost never
		// (it is a final destination).
		{"virtual mailbox", dovecot, "a+x@Users.Example", envelope.Hop{Transport: "lmtp", Nexthop: "unix:private/dovecot-lmtp"}},
		{"virtual before relay", dovecot, "a@relayed.example", envelope.Hop{Transport: "lmtp", Nexthop: "unix:private/dovecot-lmtp"}},
		{"virtual not its subdomain", dovecot, "a@sub.users.example", envelope.Hop{Transport: "smtp", Nexthop: "[smtp.isp.example]:587"}},
		{"virtual default transport", defaultVirtual, "a@users.example", envelope.Hop{Transport: "virtual", Nexthop: "users.example"}},
	} {
		got, err := c.r.Route(context.Background(), c.rcpt)
		if err != nil || got != c.want {
			t.Errorf("%s: Route(%q) = %v, %v; want %v", c.name, c.rcpt, got, err, c.want)
		}
	}
}

// transport(5), TABLE SEARCH ORDER and RESULT FORMAT.
func TestRouteTransportMaps(t *testing.T) {
	table := openTable(t, "hash", `
# user+extension@domain, user@domain
vip+urgent@example.com    smtp:[urgent.example.com]
vip@example.com           smtp:[vip.example.com]:2525
# domain
example.com               smtp:[mx.example.com]
# .domain: subdomains only
.example.com              relay:[sub-gw.example.com]
# "A null transport and null nexthop field means do not change"
noop.example              :
# "A null transport field with non-null nexthop field does not modify the
# transport information"
gw.example                :[gw.internal]
# "A non-null transport field with a null nexthop field resets the nexthop
# information to the recipient domain"
reset.example             smtp:
# error transport: the next hop is the reason
gone.example              error:5.1.1 mailbox moved
bounce.example            error:
lmtp.example              lmtp:unix:/run/dovecot/lmtp
inet.example              lmtp:inet:127.0.0.1:24
v6.example                smtp:[2001:db8::1]:25
mydest.example            smtp:[other.example]
.net                      smtp:[tld-gw.example]
`)
	r := &Router{
		TransportMaps:  table,
		Local:          domains(t, false, "mydest.example"),
		LocalTransport: "local:mail.example",
		Relayhost:      "[relayhost.example]",
		Delimiter:      "+",
	}
	for _, c := range []struct {
		rcpt string
		want envelope.Hop
	}{
		{"vip+urgent@example.com", envelope.Hop{Transport: "smtp", Nexthop: "[urgent.example.com]"}},
		{"vip+other@example.com", envelope.Hop{Transport: "smtp", Nexthop: "[vip.example.com]:2525"}},
		{"vip@example.com", envelope.Hop{Transport: "smtp", Nexthop: "[vip.example.com]:2525"}},
		{"someone@example.com", envelope.Hop{Transport: "smtp", Nexthop: "[mx.example.com]"}},
		{"Someone@EXAMPLE.COM", envelope.Hop{Transport: "smtp", Nexthop: "[mx.example.com]"}},
		{"a@deep.sub.example.com", envelope.Hop{Transport: "relay", Nexthop: "[sub-gw.example.com]"}},
		{"a@noop.example", envelope.Hop{Transport: "smtp", Nexthop: "[relayhost.example]"}},
		{"a@gw.example", envelope.Hop{Transport: "smtp", Nexthop: "[gw.internal]"}},
		{"a@reset.example", envelope.Hop{Transport: "smtp", Nexthop: "reset.example"}},
		{"a@gone.example", envelope.Hop{Transport: "error", Nexthop: "5.1.1 mailbox moved"}},
		{"a@bounce.example", envelope.Hop{Transport: "error", Nexthop: "Address is undeliverable"}},
		{"a@lmtp.example", envelope.Hop{Transport: "lmtp", Nexthop: "unix:/run/dovecot/lmtp"}},
		{"a@inet.example", envelope.Hop{Transport: "lmtp", Nexthop: "inet:127.0.0.1:24"}},
		{"a@v6.example", envelope.Hop{Transport: "smtp", Nexthop: "[2001:db8::1]:25"}},
		// transport_maps applies to every class, local included.
		{"a@mydest.example", envelope.Hop{Transport: "smtp", Nexthop: "[other.example]"}},
		// ".net" is a parent of every .net domain.
		{"a@x.y.net", envelope.Hop{Transport: "smtp", Nexthop: "[tld-gw.example]"}},
		{"a@nowhere.example", envelope.Hop{Transport: "smtp", Nexthop: "[relayhost.example]"}},
	} {
		got, err := r.Route(context.Background(), c.rcpt)
		if err != nil || got != c.want {
			t.Errorf("Route(%q) = %v, %v; want %v", c.rcpt, got, err, c.want)
		}
	}
}

// transport(5): ".domain ... This applies only when the string
// transport_maps is not listed in the parent_domain_matches_subdomains
// configuration setting. Otherwise, a domain name matches itself and its
// subdomains."
func TestRouteParentMatch(t *testing.T) {
	table := openTable(t, "hash", "example.com smtp:[gw]\n.dot.example relay:[dot]\n")
	r := &Router{TransportMaps: table}
	got, _ := r.Route(context.Background(), "a@sub.example.com")
	if want := (envelope.Hop{Transport: "smtp", Nexthop: "sub.example.com"}); got != want {
		t.Errorf("default mode: %v, want %v (example.com must not match subdomains)", got, want)
	}
	r.ParentMatch = true
	got, _ = r.Route(context.Background(), "a@sub.example.com")
	if want := (envelope.Hop{Transport: "smtp", Nexthop: "[gw]"}); got != want {
		t.Errorf("parent mode: %v, want %v", got, want)
	}
}

// transport(5): "* transport:nexthop  The special pattern * represents any
// address", tried last.
func TestRouteWildcard(t *testing.T) {
	table := openTable(t, "hash", "* smtp:[smarthost]\nexample.com :[specific]\n")
	r := &Router{TransportMaps: table}
	for rcpt, want := range map[string]envelope.Hop{
		"a@example.com":     {Transport: "smtp", Nexthop: "[specific]"},
		"a@other.example":   {Transport: "smtp", Nexthop: "[smarthost]"},
		"a@sub.example.com": {Transport: "smtp", Nexthop: "[smarthost]"},
	} {
		if got, err := r.Route(context.Background(), rcpt); err != nil || got != want {
			t.Errorf("Route(%q) = %v, %v; want %v", rcpt, got, err, want)
		}
	}
}

// Pattern tables are asked only with the full address (and "*"), as
// transport.c looks partial keys up with DICT_FLAG_FIXED.
func TestRoutePatternTable(t *testing.T) {
	re := openTable(t, "regexp", "/^user\\+.*@example\\.com$/ smtp:[ext]\n/^example\\.com$/ smtp:[never]\n")
	fixed := openTable(t, "hash", "example.com smtp:[domain]\n")
	r := &Router{TransportMaps: maps.List{re, fixed}, Delimiter: "+"}
	for rcpt, want := range map[string]envelope.Hop{
		"user+x@example.com": {Transport: "smtp", Nexthop: "[ext]"},
		"other@example.com":  {Transport: "smtp", Nexthop: "[domain]"},
	} {
		if got, err := r.Route(context.Background(), rcpt); err != nil || got != want {
			t.Errorf("Route(%q) = %v, %v; want %v", rcpt, got, err, want)
		}
	}
}

type failTable struct{}

func (failTable) Lookup(context.Context, string) (string, bool, error) {
	return "", false, errors.New("server down")
}

// A table that cannot answer defers the recipient (resolve.c:
// "transport_maps lookup failure" sets RESOLVE_FLAG_FAIL).
func TestRouteLookupFailure(t *testing.T) {
	r := &Router{TransportMaps: failTable{}}
	if _, err := r.Route(context.Background(), "a@example.com"); err == nil {
		t.Error("no error from a failing table")
	}
}

// The seed's relay: the domain goes to Google through transport_maps.
func TestRouteSeedRelay(t *testing.T) {
	table := openTable(t, "hash", "students.iiit.ac.in smtp:aspmx.l.google.com\n")
	r := &Router{
		TransportMaps:  table,
		Local:          domains(t, false, "relay.students.iiit.ac.in", "localhost"),
		LocalTransport: "local:relay.students.iiit.ac.in",
	}
	got, err := r.Route(context.Background(), "user1@students.iiit.ac.in")
	if want := (envelope.Hop{Transport: "smtp", Nexthop: "aspmx.l.google.com"}); err != nil || got != want {
		t.Errorf("got %v, %v; want %v", got, err, want)
	}
}
