package deliver

import (
	"context"
	"io"
	"time"
)

// Policy is what the caller decides for one delivery, from what it knows
// of the destination (a provider's profile, main.cf's per-destination
// limits): it can only make the Client stricter, never laxer.
type Policy struct {
	// TLSLevel raises the client's smtp_tls_security_level for this
	// delivery: "encrypt" over "may" or "none", "may" over "none". A
	// lower level, or "", leaves the client's.
	TLSLevel string
	// MaxReuse is the most messages (mail transactions) one connection
	// carries for this destination, counting the first; 0 sets no limit
	// of its own. Note the difference with Client.MaxReuse, Postfix's
	// reuse count: a Policy.MaxReuse of N is a Client.MaxReuse of N-1,
	// and 1 means no reuse. The stricter of the two applies.
	MaxReuse int
	// Shape wraps the writer the message content goes through (DATA),
	// for a bandwidth limit; nil: none. It sees the content as the queue
	// holds it (CRLF lines, before dot-stuffing), and each write it
	// passes on refreshes the command timeout, so time it spends waiting
	// does not count against the server.
	Shape func(ctx context.Context, w io.Writer) io.Writer
}

type policyKey struct{}

// WithPolicy returns a context that makes Deliver apply p.
func WithPolicy(ctx context.Context, p Policy) context.Context {
	return context.WithValue(ctx, policyKey{}, p)
}

func policyOf(ctx context.Context) Policy {
	p, _ := ctx.Value(policyKey{}).(Policy)
	return p
}

// tlsRank orders the TLS levels mailtee knows; -1 for anything else.
func tlsRank(level string) int {
	switch level {
	case "none":
		return 0
	case "may":
		return 1
	case "encrypt":
		return 2
	}
	return -1
}

// tlsLevel is the level of this delivery: the client's, raised by the
// policy.
func (d *delivery) tlsLevel() string {
	level := d.c.level()
	if p := d.policy.TLSLevel; tlsRank(p) > tlsRank(level) {
		level = p
	}
	return level
}

// fits says whether cached session s may carry this delivery's next
// transaction: with TLS when TLS is required (a session made under "may"
// that got TLS does; one that fell back to plaintext does not), and under
// the policy's message limit. A session that does not fit stays cached
// for deliveries it does fit.
func (d *delivery) fits(s *session) bool {
	if d.tlsLevel() == "encrypt" && !s.tls {
		return false
	}
	return d.policy.MaxReuse <= 0 || s.uses < d.policy.MaxReuse
}

// reusable says whether s may be cached after a transaction, by the
// client's reuse limits and the policy's. As Postfix's
// THIS_SESSION_IS_EXPIRED (smtp/smtp.h), checked when the transaction
// ends (smtp_proto.c, at the "." and at RSET): the reuse count (uses
// after the first) has reached smtp_connection_reuse_count_limit, or the
// connection is older than smtp_connection_reuse_time_limit, counted
// from when it was initiated.
func (d *delivery) reusable(s *session) bool {
	c := d.c
	if c.MaxReuse > 0 && s.uses-1 >= c.MaxReuse {
		return false
	}
	if d.policy.MaxReuse > 0 && s.uses >= d.policy.MaxReuse {
		return false
	}
	return !c.tooOld(s)
}

// tooOld says whether s is past MaxLifetime (smtp_connection_reuse_time_limit).
func (c *Client) tooOld(s *session) bool {
	return c.MaxLifetime > 0 && time.Since(s.born) > c.MaxLifetime
}
