package deliver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

// Error is the one delivery error type.
type Error struct {
	// Permanent says the failure is final: the recipient bounces.
	// Otherwise delivery is tried again later.
	Permanent bool
	// Code is the SMTP reply code, 0 when there was no reply (connection
	// failure, DNS failure, local error).
	Code int
	// Enhanced is the RFC 3463 status code, "5.1.1"; derived as Postfix
	// does when the server gave none (4.4.1 for connect failures, X.0.0
	// for a bare reply, ...).
	Enhanced string
	// Text is the reason in Postfix's words, for logs and bounces.
	Text string
	// Relay is the server as Postfix logs it, "host[ip]:port", or "none"
	// when no server was reached.
	Relay string
	// Unreachable says no server of the next hop could be talked to at
	// all (no address, no connection, no greeting): Postfix's "site
	// unavailable", after which its queue manager suspends deliveries to
	// that next hop for a while rather than try each message.
	Unreachable bool
}

// SiteUnavailable reports whether the whole next hop failed.
func (e *Error) SiteUnavailable() bool { return e.Unreachable }

func (e *Error) Error() string { return e.Text }

// IsPermanent reports whether the failure is final.
func (e *Error) IsPermanent() bool { return e.Permanent }

// EnhancedCode returns the RFC 3463 status code (the log's dsn=).
func (e *Error) EnhancedCode() string { return e.Enhanced }

func tempf(relay, status, format string, args ...any) *Error {
	return &Error{Enhanced: status, Text: fmt.Sprintf(format, args...), Relay: relay}
}

func permf(relay, status, format string, args ...any) *Error {
	return &Error{Permanent: true, Enhanced: status, Text: fmt.Sprintf(format, args...), Relay: relay}
}

// reply formats a server reply on one line, as Postfix does
// (translit(resp->str, "\n", " ")), and returns the enhanced status code
// that goes with it: the server's own when its class agrees with the reply
// code, else X.0.0 (smtp_chat.c).
func reply(e *smtp.SMTPError) (text, status string) {
	class := e.Code / 100
	var b strings.Builder
	b.WriteString(strconv.Itoa(e.Code))
	if c := e.EnhancedCode; c[0] > 0 {
		fmt.Fprintf(&b, " %d.%d.%d", c[0], c[1], c[2])
		// Postfix's dsn_valid(): subject and detail of 1 to 3 digits.
		// go-smtp reads any integers, and a code such as 5.44315926.974
		// from the server made the bounce fail ("bad status code"),
		// retried forever, and a new series of the dsn metric each time.
		if c[0] == class && c[1] >= 0 && c[1] <= 999 && c[2] >= 0 && c[2] <= 999 {
			status = fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
		}
	}
	if e.Message != "" {
		b.WriteString(" ")
		b.WriteString(strings.ReplaceAll(e.Message, "\n", " "))
	}
	if status == "" {
		status = fmt.Sprintf("%d.0.0", class)
	}
	return b.String(), status
}

// replyError is a server's refusal: "host mx.example[192.0.2.1] said:
// 550 5.1.1 ... (in reply to RCPT TO command)". Only 5xx is permanent;
// anything else unexpected (4xx, or a reply outside the protocol) is
// tried again.
func replyError(namaddr, relay string, e *smtp.SMTPError, command string) *Error {
	text, status := reply(e)
	perm := e.Code/100 == 5
	if !perm && e.Code/100 != 4 {
		status = "4.5.0"
	}
	return &Error{
		Permanent: perm,
		Code:      e.Code,
		Enhanced:  status,
		Text:      fmt.Sprintf("host %s said: %s (in reply to %s)", namaddr, text, command),
		Relay:     relay,
	}
}

// Strerror renders a network or file error the way C's Strerror(3)
// would, so that texts match Postfix's ("Connection refused", not
// "dial tcp 192.0.2.1:25: connect: connection refused").
func Strerror(err error) string {
	var errno syscall.Errno
	var ne net.Error
	switch {
	case errors.As(err, &errno):
		s := errno.Error()
		r, n := utf8.DecodeRuneInString(s)
		return string(unicode.ToUpper(r)) + s[n:]
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "Connection timed out"
	case errors.Is(err, context.Canceled):
		return "Operation canceled"
	}
	return err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}
