// Package maillog writes the mail log: one line per event, in the shape of
// Postfix's syslog lines, so that the tools administrators already run on
// /var/log/mail.log (pflogsumm, grep habits, log shippers' Postfix patterns)
// work on mailtee's log unchanged. As in chasquid, the mail log is separate
// from debug logging; unlike chasquid both share one format, because both
// are written by a log/slog handler.
//
// A line is
//
//	Nov 25 12:00:00 HOST mailtee/COMPONENT[PID]: TEXT
//
// with the time in the local zone in syslog's "Jan _2 15:04:05" format, the
// program name "mailtee" where Postfix has "postfix" (pflogsumm reads it with
// --syslog-name=mailtee), and COMPONENT the Postfix daemon that would have
// logged the event: smtpd, cleanup, qmgr, smtp, lmtp, local, error, discard,
// bounce. TEXT follows Postfix's source field for field; for the delivery
// line (log_adhoc.c):
//
//	ID: to=<TO>, orig_to=<ORIG>, relay=RELAY, delay=D, delays=a/b/c/d, dsn=X.Y.Z, status=STATUS (REASON)
//
// Each event is one slog record whose message is TEXT and whose "component"
// attribute picks COMPONENT; Slog gives the same handler to code that wants
// operational logs ("warning: ..." lines) in the same file.
package maillog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// ComponentKey is the slog attribute that names the Postfix-style component
// of a line ("smtpd", "qmgr", ...).
const ComponentKey = "component"

// Logger writes mail log lines. Safe for concurrent use. A nil *Logger
// discards everything, so packages can take one without tests having to
// supply it.
type Logger struct {
	h *Handler
	s *slog.Logger
}

// New returns a Logger writing to w lines like Postfix's syslog lines:
// "Nov 25 12:00:00 HOST mailtee/COMPONENT[PID]: TEXT", time in the local
// zone. An empty host means the system's host name, as syslog would print.
func New(w io.Writer, host string) *Logger {
	return NewWithHandler(NewHandler(w, &Options{Host: host}))
}

// NewWithHandler returns a Logger whose events go to h.
func NewWithHandler(h *Handler) *Logger {
	return &Logger{h: h, s: slog.New(h)}
}

// Slog returns a *slog.Logger that writes to the same place in the same
// format, for operational and debug logs. Give it a component with
// l.Slog().With("component", "smtpd"); without one, lines are logged as
// mailtee/master. Warnings come out as "warning: TEXT", errors as
// "error: TEXT", as Postfix's msg_warn and msg_error write them; attributes
// follow the text as key=value.
func (l *Logger) Slog() *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.s
}

// event writes one mail log line. Mail log events are written whatever the
// handler's level: an administrator who turns debug logging down still
// needs every delivery in the log.
func (l *Logger) event(level slog.Level, component, text string) {
	if l == nil {
		return
	}
	r := slog.NewRecord(time.Now(), level, text, 0)
	r.AddAttrs(slog.String(ComponentKey, component))
	_ = l.h.Handle(context.Background(), r)
}

// Printf logs a generic line for component.
func (l *Logger) Printf(component, format string, args ...any) {
	l.event(slog.LevelInfo, component, fmt.Sprintf(format, args...))
}

// Warnf logs "warning: TEXT" for component, as Postfix's msg_warn does.
func (l *Logger) Warnf(component, format string, args ...any) {
	l.event(slog.LevelWarn, component, fmt.Sprintf(format, args...))
}

// NameAddr formats a peer the way Postfix logs it, "name[addr]", with
// "unknown" for a peer whose address has no (verified) name.
func NameAddr(name, addr string) string {
	if name == "" {
		name = "unknown"
	}
	return name + "[" + addr + "]"
}

// Queued logs qmgr's "ID: from=<FROM>, size=N, nrcpt=N (queue active)":
// the message entered the active queue.
func (l *Logger) Queued(id, from string, size int64, nrcpt int) {
	l.event(slog.LevelInfo, "qmgr", id+": from=<"+from+">, size="+
		strconv.FormatInt(size, 10)+", nrcpt="+strconv.Itoa(nrcpt)+" (queue active)")
}

// Removed logs qmgr's "ID: removed": the queue file is gone.
func (l *Logger) Removed(id string) {
	l.event(slog.LevelInfo, "qmgr", id+": removed")
}

// Bounce logs bounce's "ID: sender non-delivery notification: DSNID", where
// DSNID is the queue ID of the notification.
func (l *Logger) Bounce(id, dsnID string) {
	l.event(slog.LevelInfo, "bounce", id+": sender non-delivery notification: "+dsnID)
}

// PostmasterBounce logs bounce's "ID: postmaster non-delivery notification:
// DSNID", for failures reported to postmaster (automatic copies, and
// bounces of mail from the null sender).
func (l *Logger) PostmasterBounce(id, dsnID string) {
	l.event(slog.LevelInfo, "bounce", id+": postmaster non-delivery notification: "+dsnID)
}

// Delivery is one recipient's delivery attempt, as a delivery agent
// reports it.
type Delivery struct {
	ID     string // queue ID
	To     string // recipient, after rewriting
	OrigTo string // recipient as received; logged only when it differs from To
	// Relay is where the message went: "host[ip]:port" for SMTP and LMTP,
	// "local" for mailboxes, "none" when no connection was made (the
	// default).
	Relay string
	// Transport is the component that logs the line: "smtp", "lmtp",
	// "local", "error", "discard" or "relay" (default "smtp").
	Transport string
	// ConnUse, when above 1, is how many deliveries the SMTP connection has
	// carried, this one included (Postfix's "conn_use=N").
	ConnUse int
	// Delay is the time from arrival to the end of this attempt; Delays
	// splits it as Postfix does: before the queue manager, in the queue
	// manager, connection set-up, transmission.
	Delay  time.Duration
	Delays [4]time.Duration
	DSN    string // enhanced status code, "2.0.0"
	Status string // "sent", "deferred", "bounced", "expired"
	// Reason is the text in parentheses: the remote reply ("250 2.0.0 Ok:
	// queued as 4F9D", "host mx[ip] said: 550 ... (in reply to RCPT TO
	// command)") or what went wrong ("connect to x[1.2.3.4]:25: Connection
	// refused").
	Reason string
	// Copy marks an automatic copy (BCC maps): when it fails, a second line
	// says where the failure was reported, so that an administrator does
	// not wonder why the sender never heard of it.
	Copy bool
}

// Delivery logs a delivery attempt in Postfix's exact field order. The line
// is what pflogsumm parses; for a failed automatic copy an extra line
// follows, shaped so that no Postfix log parser mistakes it for a
// delivery:
//
//	ID: to=<TO>: automatic copy; failures are reported to postmaster, not to the sender
func (l *Logger) Delivery(d Delivery) {
	if l == nil {
		return
	}
	comp := d.Transport
	if comp == "" {
		comp = "smtp"
	}
	l.event(slog.LevelInfo, comp, string(AppendDelivery(nil, &d)))
	if d.Copy && (d.Status == "bounced" || d.Status == "expired") {
		l.event(slog.LevelInfo, comp, d.ID+": to=<"+d.To+
			">: automatic copy; failures are reported to postmaster, not to the sender")
	}
}

// AppendDelivery appends the text of d's log line (without the syslog
// prefix) to b.
func AppendDelivery(b []byte, d *Delivery) []byte {
	b = append(b, d.ID...)
	b = append(b, ": to=<"...)
	b = append(b, d.To...)
	b = append(b, '>')
	if d.OrigTo != "" && !strings.EqualFold(d.OrigTo, d.To) {
		b = append(b, ", orig_to=<"...)
		b = append(b, d.OrigTo...)
		b = append(b, '>')
	}
	relay := d.Relay
	if relay == "" {
		relay = "none"
	}
	b = append(b, ", relay="...)
	b = append(b, relay...)
	if d.ConnUse > 1 {
		b = append(b, ", conn_use="...)
		b = strconv.AppendInt(b, int64(d.ConnUse), 10)
	}
	b = append(b, ", delay="...)
	b = AppendDelay(b, d.Delay)
	b = append(b, ", delays="...)
	for i, x := range d.Delays {
		if i > 0 {
			b = append(b, '/')
		}
		b = AppendDelay(b, x)
	}
	b = append(b, ", dsn="...)
	b = append(b, d.DSN...)
	b = append(b, ", status="...)
	b = append(b, d.Status...)
	b = append(b, " ("...)
	b = append(b, d.Reason...)
	b = append(b, ')')
	return b
}
