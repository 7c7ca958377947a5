// Package bounce is mailtee's bounce(8): who is told when a delivery
// fails, and the delivery status notification they get.
//
// The rule that makes dual delivery safe lives here: the failure of an
// automatic copy (recipient_bcc_maps, always_bcc, mailbox_bcc_maps, a
// relay's copies) never reaches the outside sender; it goes to
// bounce_notice_recipient. A notification that fails is logged and
// dropped: never a bounce for a bounce.
package bounce

import (
	"bytes"
	"context"
	"io"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/dsn"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/queue"
)

// Policy is what main.cf says about notifications.
type Policy struct {
	Hostname string // myhostname: Reporting-MTA and MAILER-DAEMON@
	// MailName is mail_name, in the notices' X-NAME-* fields and
	// diagnostic type; "" is mailtee's default, "mailtee".
	MailName string
	Myorigin string // the domain of a bare notice recipient
	// NoticeRecipient is bounce_notice_recipient: it gets the failures
	// of automatic copies (postmaster by default).
	NoticeRecipient string
	// DoubleBounce is whether notify_classes has 2bounce: then the
	// failures of mail from <> go to DoubleBounceRecipient
	// (2bounce_notice_recipient); else they are only logged, as by
	// Postfix's default.
	DoubleBounce          bool
	DoubleBounceRecipient string
	// MaxOriginal is bounce_size_limit: the original goes whole up to
	// this size, else its header only.
	MaxOriginal int64
}

// Notice is one notification to send: to whom, and for which failed
// recipients (indexes into the message's recipients).
type Notice struct {
	To         string
	Postmaster bool // a notice to postmaster (copies, double bounces)
	Rcpts      []int
}

// Plan decides who is told of the failed recipients of m. Recipients
// nobody is told of (the failures of a notification, or of mail from <>
// without 2bounce) are returned in dropped, for the log.
func Plan(p Policy, m *queue.Message, failed []int) (notices []Notice, dropped []int) {
	if m.Env.Notification {
		return nil, failed
	}
	type dest struct {
		to         string
		postmaster bool
	}
	at := map[dest]int{} // index in notices
	for _, i := range failed {
		r := m.Rcpts[i]
		if !r.Copy && r.Notify != "" && !strings.Contains(strings.ToUpper(r.Notify), "FAILURE") {
			// The client asked not to be told (DSN NOTIFY=NEVER, or
			// only SUCCESS/DELAY): Postfix logs it only
			// (bounce_one_service.c, bounce_notify_verp.c).
			dropped = append(dropped, i)
			continue
		}
		n := Notice{To: m.Env.From}
		switch {
		case r.Copy:
			n = Notice{To: p.NoticeRecipient, Postmaster: true}
		case r.NotifyOwner != "":
			n.To = r.NotifyOwner
		case n.To == "": // mail from <>: a double bounce
			if !p.DoubleBounce {
				dropped = append(dropped, i)
				continue
			}
			n = Notice{To: p.DoubleBounceRecipient, Postmaster: true}
		}
		if n.To != "" && !strings.Contains(n.To, "@") {
			n.To += "@" + p.Myorigin
		}
		k, ok := at[dest{n.To, n.Postmaster}]
		if !ok {
			k = len(notices)
			at[dest{n.To, n.Postmaster}] = k
			notices = append(notices, n)
		}
		notices[k].Rcpts = append(notices[k].Rcpts, i)
	}
	return notices, dropped
}

// Injector queues a message mailtee made (cleanup's Door).
type Injector interface {
	NewID() string
	Inject(ctx context.Context, id string, env *envelope.Envelope, body io.Reader) error
}

// Notifier sends the notifications of finished messages.
type Notifier struct {
	Policy func() Policy // the configuration in force
	Queue  Injector
	Log    *maillog.Logger
	Now    func() time.Time // time.Now when nil
}

// Bounce queues the notifications for m's failed recipients, calling
// notified with the recipients of each one as soon as it is queued (the
// queue's Options.Bounce).
func (n *Notifier) Bounce(ctx context.Context, m *queue.Message, failed []int, notified func([]int) error) error {
	p := n.Policy()
	notices, dropped := Plan(p, m, failed)
	for _, i := range dropped {
		what := "mail from <>"
		if m.Env.Notification {
			what = "notification"
		}
		n.Log.Printf("bounce", "%s: undeliverable %s to <%s> discarded: %s", m.ID, what, m.Rcpts[i].Addr, m.Rcpts[i].LastErr)
	}
	for _, no := range notices {
		if err := n.send(ctx, p, m, no); err != nil {
			return err
		}
		if err := notified(no.Rcpts); err != nil {
			return err
		}
	}
	return nil
}

func (n *Notifier) now() time.Time {
	if n.Now != nil {
		return n.Now()
	}
	return time.Now()
}

// send builds and queues one notification.
func (n *Notifier) send(ctx context.Context, p Policy, m *queue.Message, no Notice) error {
	body, err := m.Open()
	if err != nil {
		return err
	}
	defer body.Close()
	now := n.now()
	rep := &dsn.Report{
		ReportingMTA: p.Hostname,
		MailName:     p.MailName,
		QueueID:      m.ID,
		From:         "MAILER-DAEMON@" + p.Hostname,
		To:           no.To,
		Sender:       m.Env.From,
		Arrival:      m.Env.Arrival,
		Postmaster:   no.Postmaster,
		Original:     body,
		MaxOriginal:  p.MaxOriginal,
		EnvID:        m.Env.EnvID,
		HeadersOnly:  m.Env.Ret == "HDRS",
	}
	for _, i := range no.Rcpts {
		rep.Recipients = append(rep.Recipients, recipient(m.Rcpts[i], now, p.MailName))
	}
	id := n.Queue.NewID()
	data, err := dsn.Build(rep, now, id+"@"+p.Hostname)
	if err != nil {
		return err
	}
	env := &envelope.Envelope{From: "", Rcpts: []envelope.Rcpt{{Addr: no.To}}, ClientName: "localhost", Protocol: "local",
		Arrival: now, Notification: true, Parent: m.ID}
	if err := n.Queue.Inject(ctx, id, env, bytes.NewReader(data)); err != nil {
		return err
	}
	if no.Postmaster {
		n.Log.PostmasterBounce(m.ID, id)
	} else {
		n.Log.Bounce(m.ID, id)
	}
	return nil
}

// Recipient is the per-recipient part of a notification for r: a
// failure keeps its own 5.X.X status; an expired message, or one whose
// last error was temporary, reports 5.4.7 (delivery time expired).
func Recipient(r queue.RcptState, now time.Time) dsn.Recipient { return recipient(r, now, "") }

// recipient is Recipient with mail_name ("" for the default) in the
// diagnostic type.
func recipient(r queue.RcptState, now time.Time, mailName string) dsn.Recipient {
	status := r.DSN
	if status == "" || status[0] != '5' {
		status = "5.4.7"
		if !r.Expired && r.DSN != "" {
			status = r.DSN
		}
	}
	if !validStatus(status) {
		// A queue file written before deliver kept remote codes in
		// RFC 3463's form may hold "5.44315926.974": refused by
		// internal/dsn, the bounce would be retried forever.
		cls := "5"
		if strings.HasPrefix(status, "4") {
			cls = "4"
		}
		status = cls + ".0.0"
	}
	diag := r.LastErr
	if r.Expired {
		diag = "delivery time expired; last error: " + r.LastErr
	}
	return dsn.Recipient{Final: r.Addr, Original: r.Orig, Action: "failed", Status: status,
		RemoteMTA: remoteHost(r.Relay), Diagnostic: dsn.OwnDiagnostic(mailName, diag), LastAttempt: now, ORcpt: r.ORcpt}
}

// validStatus reports whether s is an RFC 3463 status code, X.Y.Z
// with X 2, 4 or 5 and Y, Z of 1 to 3 digits (what internal/dsn takes).
func validStatus(s string) bool {
	cls, rest, ok := strings.Cut(s, ".")
	if !ok || len(cls) != 1 || !strings.Contains("245", cls) {
		return false
	}
	sub, det, ok := strings.Cut(rest, ".")
	for _, p := range []string{sub, det} {
		if !ok || len(p) < 1 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

// remoteHost takes "host[ip]:port" to "host" for Remote-MTA.
func remoteHost(relay string) string {
	if i := strings.IndexByte(relay, '['); i > 0 {
		return relay[:i]
	}
	if relay == "none" || relay == "local" {
		return ""
	}
	return relay
}
