// Package smtpd is mailtee's SMTP server: the go-smtp backend that decides
// who may relay and which recipients exist, enforces Postfix's limits, and
// hands accepted messages to the queue.
//
// It behaves as Postfix's smtpd(8) does with its default restrictions, and
// answers and logs in Postfix's words so that existing habits and log tools
// work:
//
//   - smtpd_relay_restrictions = permit_mynetworks, defer_unauth_destination
//     (answered "554 5.7.1 <addr>: Relay access denied", as mailtee's design
//     asks, instead of Postfix's 4xx for the defer_ variant);
//   - smtpd_reject_unlisted_recipient = yes, with local_recipient_maps,
//     relay_recipient_maps and virtual_alias_maps (policy.go);
//   - smtpd_forbid_bare_newline (normalize by default, or reject) and
//     smtpd_forbid_bare_newline_exclusions; a bare CR in content is
//     refused in every mode (data.go);
//   - message_size_limit, smtpd_recipient_limit, smtpd_timeout,
//     smtpd_hard_error_limit, smtpd_soft_error_limit,
//     smtpd_error_sleep_time, smtpd_junk_command_limit;
//   - the client limits that Postfix keeps in anvil(8) (package anvil):
//     smtpd_client_connection_count_limit and the connection, message and
//     recipient rate limits, with smtpd_client_event_limit_exceptions;
//     and the smtp service's process limit with master(8)'s stress mode
//     (limits.go);
//   - a Received: header in Postfix's format, and "250 2.0.0 Ok: queued as
//     ID" only once the queue has the message on stable storage.
//
// go-smtp speaks the protocol. What it has no hook for is done by wrapping
// each accepted connection (conn.go): the banner text, Postfix's words in
// place of go-smtp's own replies (replies.go), connection limits,
// a timeout per read rather than per command, counting the commands that
// go-smtp answers itself, and closing the connection after a 421. See
// conn.go for why each is done there. STARTTLS is done by conn too, below
// go-smtp, so that all of this goes on in TLS sessions (starttls.go).
//
// Addresses in the envelope handed to the queue are in external form
// (address.Address.String: a local part that needs quotes is quoted), as
// the client sent them, without case folding.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailtee/mailtee/internal/anvil"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/maps"
)

// Enqueuer is the queue as the SMTP server sees it.
type Enqueuer interface {
	// NewID returns a queue ID, assigned when the message's DATA starts
	// (for Received: and logs).
	NewID() string
	// Enqueue stores the message durably and returns only once it is on
	// stable storage; errors are returned as-is (the queue may return an
	// error wrapping syscall.ENOSPC when the disk is full).
	//
	// Enqueue must read body to its end (io.EOF) before it commits: the
	// server checks the content as it streams (bare LF, bare CR, size)
	// and reports a bad message only through body's error. If body
	// returns an error, Enqueue stores nothing and returns that error
	// (possibly wrapped).
	// An error with an SMTPReply() (code int, enhanced, text string)
	// method (cleanup.Refusal) is a refusal of the content: that reply
	// goes to the client as it is.
	Enqueue(ctx context.Context, id string, env *envelope.Envelope, body io.Reader) error
}

// Policy is what decides which recipients are accepted: Postfix's relay
// control and recipient validation.
type Policy struct {
	// Mynetworks are the clients that may relay anywhere (mynetworks).
	Mynetworks *maps.NetList
	// Local is mydestination (plus the host's own addresses in
	// [brackets], if wanted): final delivery here.
	Local *maps.DomainList
	// Relay is relay_domains (may be nil).
	Relay *maps.DomainList
	// Virtual is virtual_alias_domains (may be nil).
	Virtual *maps.DomainList
	// SRS, when set, answers recipients at srs_domain first
	// (internal/srs, Codec.Answer): mine says it decides, err refuses
	// (550 5.1.1) a forged or expired SRS address, whatever the client.
	SRS func(ctx context.Context, local, domain string) (mine bool, err error)
	// LimitExceptions is smtpd_client_event_limit_exceptions: clients
	// exempt from the per-client limits (Client in Options) and allowed
	// past MaxClients. nil exempts no one.
	LimitExceptions *maps.NetList
	// LocalRecipients is local_recipient_maps; nil accepts any local
	// recipient.
	LocalRecipients maps.Table
	// VirtualAliases is virtual_alias_maps. Recipients in Virtual
	// domains must be found here, else 550 5.1.1; a recipient found here
	// is accepted in a Local domain too, as Postfix does.
	VirtualAliases maps.Table
	// Delimiter is recipient_delimiter.
	Delimiter string
	// UnknownLocalCode is unknown_local_recipient_reject_code; 0 means
	// Postfix's default, 550.
	UnknownLocalCode int
	// RelayRecipients is relay_recipient_maps: when not nil, a recipient
	// in a Relay domain must be found here (or in VirtualAliases), else
	// "User unknown in relay recipient table". Nil accepts any.
	RelayRecipients maps.Table
	// UnknownRelayCode is unknown_relay_recipient_reject_code; 0 means
	// Postfix's default, 550.
	UnknownRelayCode int
	// VirtualMailbox is virtual_mailbox_domains (nil for none): final
	// destinations whose recipients must be in VirtualMailboxes (or
	// VirtualAliases), else "User unknown in virtual mailbox table".
	VirtualMailbox *maps.DomainList
	// VirtualMailboxes is virtual_mailbox_maps; nil accepts any.
	VirtualMailboxes maps.Table
	// UnknownVirtualCode is unknown_virtual_mailbox_reject_code; 0
	// means Postfix's default, 550.
	UnknownVirtualCode int
	// Restrictions are smtpd_relay_restrictions and
	// smtpd_recipient_restrictions (restrict.go); nil is Postfix's
	// default.
	Restrictions *Restrictions
	// BareNewlineExclusions is smtpd_forbid_bare_newline_exclusions
	// (Postfix's default: $mynetworks): clients to which
	// Options.BareNewline = reject does not apply. nil excludes none.
	BareNewlineExclusions *maps.NetList
}

// Options configure a Server. Zero values mean "no limit" except where
// said otherwise.
type Options struct {
	// Hostname is myhostname: in replies and in the Received: header.
	Hostname string
	// Banner is the expanded smtpd_banner; "" means Postfix's default,
	// "$myhostname ESMTP $mail_name".
	Banner string
	// MailName is mail_name, in the Received: header (and the default
	// banner); "" means mailtee's default, "mailtee".
	MailName string

	MaxMessageBytes int64         // message_size_limit
	MaxRecipients   int           // smtpd_recipient_limit
	Timeout         time.Duration // smtpd_timeout, for each read and write
	// HardErrorLimit is smtpd_hard_error_limit; 0 means Postfix's
	// default, 20.
	HardErrorLimit int
	// SoftErrorLimit is smtpd_soft_error_limit; 0 means Postfix's
	// default, 10.
	SoftErrorLimit int
	// JunkCommandLimit is smtpd_junk_command_limit; 0 means Postfix's
	// default, 100.
	JunkCommandLimit int
	// ErrorSleepTime is smtpd_error_sleep_time: the pause before each
	// reply once a session has made SoftErrorLimit errors. Zero pauses
	// not at all.
	ErrorSleepTime time.Duration
	// Stress holds the values of the four limits above in stress mode
	// (Postfix's defaults are ${stress?{10}:{300}}s and the like); a zero
	// field keeps the normal value.
	Stress SessionLimits
	// MaxClients is the smtp service's process limit
	// (default_process_limit): past it, a new client waits for a session
	// to end, as it would in Postfix's listen queue, and the server is
	// in stress mode. 0: no limit.
	MaxClients int
	// Client are the per-client limits Postfix keeps in anvil(8).
	Client ClientLimits

	// TLS enables STARTTLS (TLS 1.2 at least); nil offers none. conn
	// does STARTTLS itself, not go-smtp (starttls.go).
	TLS *tls.Config
	// StartTLSTimeout is smtpd_starttls_timeout, for the TLS handshake;
	// 0 means Postfix's default, 300s (10s in stress mode: Stress).
	StartTLSTimeout time.Duration
	// RequireTLS is smtpd_tls_security_level = encrypt: MAIL is refused
	// until the client has said STARTTLS.
	RequireTLS bool
	SMTPUTF8   bool // smtputf8_enable

	// BareNewline is smtpd_forbid_bare_newline (data.go); the zero value
	// is normalize, mailtee's default.
	BareNewline BareNewline
	// BareNewlineCode is smtpd_forbid_bare_newline_reject_code; 0 means
	// Postfix's default, 550.
	BareNewlineCode int

	// Policy decides relaying and recipients. Nil is an empty Policy:
	// no client may relay and no domain is ours, so every RCPT is
	// refused.
	Policy *Policy
	Queue  Enqueuer // required
	// MailLog receives one Postfix-shaped log line per event, without
	// timestamp and host (the caller adds them). It is called from many
	// goroutines at once. Nil discards.
	MailLog func(line string)
	// Observer, when set, is told of the events MailLog shows
	// (observer.go): for metrics.
	Observer Observer
}

// Postfix's defaults for the error limits.
const (
	defaultHardErrorLimit   = 20
	defaultSoftErrorLimit   = 10
	defaultJunkCommandLimit = 100
	// smtpd_starttls_timeout = ${stress?{10}:{300}}s
	defaultStartTLSTimeout       = 300 * time.Second
	defaultStressStartTLSTimeout = 10 * time.Second
)

// maxLineLength bounds a line as go-smtp reads it, in commands and in
// message content alike; go-smtp closes the session on a longer one.
// RFC 5321 allows 1000 octets, but real messages have longer lines
// (unwrapped HTML, base64) and Postfix accepts those, so the bound is only
// there to cap the memory a command line can take.
const maxLineLength = 1 << 20

// Server is an SMTP server. It wraps *smtp.Server.
type Server struct {
	o         Options
	tlsConfig *tls.Config // for STARTTLS; nil offers none
	policy    atomic.Pointer[Policy]
	smtp      *smtp.Server
	greeting  []byte // "220 <banner>\r\n"
	errSleep  time.Duration
	// normal and stressed are the session limits out of and in stress
	// mode; limits picks one.
	normal, stressed SessionLimits
	stressUntil      atomic.Int64  // UnixNano; stress mode until then
	anvil            *anvil.Table  // nil when no per-client limit is set
	stop             chan struct{} // closed by Shutdown: waiting clients go

	// ctx is given to Enqueue; it ends when Shutdown gives up waiting.
	ctx    context.Context
	cancel context.CancelFunc

	closing  atomic.Bool
	mu       sync.Mutex
	conns    map[*conn]struct{} // every connection admitted or waiting
	active   int                // sessions holding a place (MaxClients)
	waiting  []*conn            // clients waiting for a place, oldest first
	busyWarn time.Time          // when the process limit was last logged
	refusing sync.WaitGroup     // goroutines answering 421 to refused clients
}

// New returns a server; Serve starts it. It panics if o.Queue is nil.
func New(o Options) *Server {
	if o.Queue == nil {
		panic("smtpd: Options.Queue is nil")
	}
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	if o.MailName == "" {
		o.MailName = "mailtee"
	}
	if o.Banner == "" {
		o.Banner = o.Hostname + " ESMTP " + o.MailName
	}
	if o.BareNewlineCode == 0 {
		o.BareNewlineCode = 550
	}
	if o.MaxMessageBytes < 0 {
		o.MaxMessageBytes = 0
	}
	if o.Observer == nil {
		o.Observer = noObserver{}
	}
	s := &Server{
		o:        o,
		greeting: []byte("220 " + maillog.OneLine(o.Banner) + "\r\n"),
		errSleep: o.ErrorSleepTime,
		conns:    make(map[*conn]struct{}),
		stop:     make(chan struct{}),
	}
	s.SetPolicy(o.Policy)
	s.normal = SessionLimits{o.Timeout, o.HardErrorLimit, o.SoftErrorLimit, o.JunkCommandLimit, o.StartTLSTimeout}.orDefaults(SessionLimits{
		HardErrorLimit: defaultHardErrorLimit, SoftErrorLimit: defaultSoftErrorLimit, JunkCommandLimit: defaultJunkCommandLimit,
		StartTLSTimeout: defaultStartTLSTimeout})
	s.stressed = o.Stress.orDefaults(SessionLimits{StartTLSTimeout: defaultStressStartTLSTimeout}.orDefaults(s.normal))
	if o.Client.any() {
		s.anvil = anvil.New(o.Client.TimeUnit)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	srv := smtp.NewServer(backend{s})
	srv.Domain = o.Hostname
	// go-smtp checks SIZE= and counts DATA bytes against this, and
	// advertises it in EHLO.
	srv.MaxMessageBytes = o.MaxMessageBytes
	// The recipient limit is checked in Rcpt, to answer in Postfix's words.
	srv.MaxRecipients = 0
	srv.MaxLineLength = maxLineLength
	// Reads get their deadline from conn.Read, one per read as Postfix's
	// smtpd_timeout: go-smtp's ReadTimeout is set once per command, so a
	// large message on a slow link would be cut off mid-DATA.
	srv.ReadTimeout = 0
	// Writes get theirs from conn.SetWriteDeadline, which go-smtp calls
	// before each reply when WriteTimeout is set: the timeout is shorter
	// in stress mode. The value itself is not used.
	srv.WriteTimeout = time.Hour
	srv.EnableSMTPUTF8 = o.SMTPUTF8
	srv.ErrorLog = errorLog{s}
	if o.TLS != nil {
		cfg := o.TLS.Clone()
		if cfg.MinVersion < tls.VersionTLS12 {
			cfg.MinVersion = tls.VersionTLS12
		}
		// Not go-smtp's: conn does STARTTLS (starttls.go).
		s.tlsConfig = cfg
	}
	s.smtp = srv
	return s
}

// Serve accepts connections on l until Shutdown. It may be called for
// several listeners at once; the limits are shared.
func (s *Server) Serve(l net.Listener) error {
	if s.closing.Load() {
		return smtp.ErrServerClosed
	}
	return s.smtp.Serve(&listener{Listener: l, srv: s})
}

// Shutdown stops accepting connections and lets sessions finish what they
// are doing: a session in a mail transaction (after MAIL FROM) may finish
// it; an idle session, or one whose transaction has ended, is answered
// "421" and closed. When ctx ends first, every connection is closed, an
// Enqueue in progress is cancelled, and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.closing.CompareAndSwap(false, true) {
		close(s.stop)
	}
	s.mu.Lock()
	for c := range s.conns {
		c.interruptIfIdle()
	}
	s.mu.Unlock()
	err := s.smtp.Shutdown(ctx)
	if ctx.Err() != nil {
		// go-smtp's Close does nothing once Shutdown has begun, so the
		// connections are closed here; their sessions then end on the
		// read error.
		s.cancel()
		s.mu.Lock()
		left := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			left = append(left, c)
		}
		s.mu.Unlock()
		for _, c := range left {
			c.Close()
		}
	}
	s.refusing.Wait()
	return err
}

// log writes one line to MailLog.
func (s *Server) log(format string, args ...any) {
	if s.o.MailLog != nil {
		s.o.MailLog(fmt.Sprintf(format, args...))
	}
}

// errorLog takes go-smtp's reports of unexpected conditions (a recovered
// panic, a connection error) into the mail log as warnings.
type errorLog struct{ s *Server }

func (l errorLog) Printf(format string, v ...any) {
	l.s.log("warning: smtpd: %s", maillog.OneLine(fmt.Sprintf(format, v...)))
}

func (l errorLog) Println(v ...any) {
	l.s.log("warning: smtpd: %s", maillog.OneLine(fmt.Sprint(v...)))
}

// reply builds an SMTP reply for go-smtp to send; the enhanced status code
// is written in the text's front, as in Postfix's source.
func reply(code int, enh string, format string, args ...any) *smtp.SMTPError {
	var ec smtp.EnhancedCode
	if _, err := fmt.Sscanf(enh, "%d.%d.%d", &ec[0], &ec[1], &ec[2]); err != nil {
		ec = smtp.EnhancedCodeNotSet
	}
	return &smtp.SMTPError{Code: code, EnhancedCode: ec, Message: fmt.Sprintf(format, args...)}
}

// replyText is a reply as it appears on the wire and in log lines.
func replyText(e *smtp.SMTPError) string {
	return fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message)
}

var errNotOurs = errors.New("smtpd: connection was not accepted through smtpd.Server.Serve")

// SetPolicy replaces the relay control and recipient checks, for a
// configuration reload: sessions use the new policy from their next
// command on. nil refuses every recipient.
func (s *Server) SetPolicy(p *Policy) {
	if p == nil {
		p = &Policy{}
	}
	s.policy.Store(p)
}
