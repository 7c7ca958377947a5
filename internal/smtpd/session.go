package smtpd

import (
	"errors"
	"io"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/anvil"
	"github.com/mailtee/mailtee/internal/envelope"
)

// backend is the go-smtp Backend: a session from the first HELO/EHLO on.
// STARTTLS does not start a new one (starttls.go).
type backend struct{ s *Server }

func (b backend) NewSession(sc *smtp.Conn) (smtp.Session, error) {
	// go-smtp does no TLS: conn does it below (starttls.go).
	c, ok := sc.Conn().(*conn)
	if !ok {
		return nil, errNotOurs
	}
	c.newSession()
	return &session{srv: b.s, c: c, sc: sc}, nil
}

// session is one go-smtp session: the mail transaction in progress.
type session struct {
	srv *Server
	c   *conn
	sc  *smtp.Conn

	// mu guards the transaction: for BDAT, go-smtp runs Data on a
	// goroutine of its own while the connection's goroutine may call
	// Reset or Logout.
	mu      sync.Mutex
	inTx    bool
	from    address.Address
	helo    string
	utf8    bool
	body    string // BODY=, upper case, or ""
	arrival time.Time
	rcpts   []address.Address
}

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if e := s.c.begin(&s.c.stats.mail, "MAIL"); e != nil {
		return e
	}
	// A bare CR before this transaction (in an earlier message that was
	// refused for it, or in a command) is not this message's.
	s.c.bareCR()
	err := s.mail(from, opts)
	s.c.done(&s.c.stats.mail, err, true)
	return err
}

func (s *session) mail(from string, opts *smtp.MailOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inTx {
		// go-smtp lets a second MAIL through; Postfix does not.
		return reply(503, "5.5.1", "Error: nested MAIL command")
	}
	if s.srv.o.RequireTLS && !s.c.isTLS() {
		// Postfix's smtpd, at smtpd_tls_security_level = encrypt.
		return reply(530, "5.7.0", "Must issue a STARTTLS command first")
	}
	if rej := s.c.overRate(anvil.Message); rej != nil {
		return rej
	}
	a, err := parsePath(from)
	if err != nil || (!a.IsNull() && a.Domain == "") {
		return reply(501, "5.1.7", "Bad sender address syntax")
	}
	// go-smtp refuses a too large SIZE= itself, in its own words;
	// this is in case it stops doing so.
	if max := s.srv.o.MaxMessageBytes; max > 0 && opts.Size > max {
		return reply(552, "5.3.4", "Message size exceeds fixed limit")
	}
	s.inTx = true
	s.from = a
	s.helo = s.c.heloName(s.sc.Hostname())
	s.utf8 = opts.UTF8
	s.body = string(opts.Body)
	s.arrival = time.Now()
	s.rcpts = nil
	s.c.setTx(true)
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if e := s.c.begin(&s.c.stats.rcpt, "RCPT"); e != nil {
		return e
	}
	counts, err := s.rcpt(to)
	s.c.done(&s.c.stats.rcpt, err, counts)
	return err
}

// rcpt checks one recipient; counts says whether a refusal counts as a
// client error (Postfix does not count the recipient limit).
func (s *session) rcpt(to string) (counts bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.inTx {
		return true, reply(503, "5.5.1", "Error: need MAIL command")
	}
	if rej := s.c.overRate(anvil.Recipient); rej != nil {
		return true, rej
	}
	a, err := parsePath(to)
	if err != nil || a.IsNull() || a.Domain == "" {
		return true, reply(501, "5.1.3", "Bad recipient address syntax")
	}
	if max := s.srv.o.MaxRecipients; max > 0 && len(s.rcpts) >= max {
		return false, reply(452, "4.5.3", "Error: too many recipients")
	}
	if rej := s.srv.policy.Load().checkRcpt(s.srv.ctx, s.c.addr, a); rej != nil {
		s.srv.log("NOQUEUE: reject: RCPT from %s: %s; from=<%s> to=<%s> proto=%s helo=<%s>",
			s.c.namaddr(), replyText(rej), s.from, a, s.c.baseProtocol(), s.helo)
		s.srv.o.Observer.Reject(rej.Code)
		return true, rej
	}
	s.rcpts = append(s.rcpts, a)
	return false, nil
}

func (s *session) Data(r io.Reader) error {
	if e := s.c.begin(&s.c.stats.data, "DATA"); e != nil {
		return e
	}
	id, err := s.data(r)
	if err != nil {
		s.c.done(&s.c.stats.data, err, true)
		return err
	}
	s.c.done(&s.c.stats.data, nil, false)
	s.c.forgive()
	// go-smtp sends whatever Data returns as the reply; this is how the
	// queue ID gets into the 250, as Postfix's clients and logs expect.
	return reply(250, "2.0.0", "Ok: queued as %s", id)
}

// data streams the message into the queue and returns its queue ID, or
// the reply that refuses it.
func (s *session) data(r io.Reader) (string, error) {
	s.mu.Lock()
	from, helo, utf8, bodyType, arrival := s.from, s.helo, s.utf8, s.body, s.arrival
	rcpts := append([]address.Address(nil), s.rcpts...)
	inTx := s.inTx
	s.mu.Unlock()
	if !inTx || len(rcpts) == 0 {
		return "", reply(554, "5.5.1", "Error: no valid recipients")
	}

	q := s.srv.o.Queue
	id := q.NewID()
	s.srv.log("%s: client=%s", id, s.c.namaddr())
	s.srv.o.Observer.Accepted()
	proto, isTLS := s.c.baseProtocol(), s.c.isTLS()
	env := &envelope.Envelope{
		From:       from.String(),
		ClientName: s.c.name,
		ClientAddr: s.c.addrString(),
		Helo:       helo,
		Protocol:   proto,
		Arrival:    arrival,
		SMTPUTF8:   utf8,
		BodyType:   bodyType,
	}
	if isTLS && proto == "ESMTP" {
		env.Protocol = "ESMTPS"
	}
	ext := make([]string, len(rcpts))
	for i, a := range rcpts {
		ext[i] = a.String()
		env.Rcpts = append(env.Rcpts, envelope.Rcpt{Addr: ext[i], Orig: ext[i]})
	}
	// RFC 3848 and 6531 names: the S only for ESMTP, as Postfix writes it.
	with := proto
	if utf8 {
		with = "UTF8SMTP"
	}
	if isTLS && proto == "ESMTP" {
		with += "S"
	}
	hdr := receivedInfo{
		helo: helo, name: s.c.name, addr: s.c.rfcAddr(),
		host: s.srv.o.Hostname, mailName: s.srv.o.MailName, with: with, id: id, rcpts: ext, date: arrival,
	}.String()

	body := &bodyReader{r: r, bareCR: s.c.bareCR, reject: s.c.rejectBareLF(), bdat: s.c.isBDAT()}
	err := q.Enqueue(s.srv.ctx, id, env, io.MultiReader(strings.NewReader(hdr), body))
	body.release() // Enqueue has read what it will

	// whatsup logs a refusal as Postfix's log_whatsup does.
	whatsup := func(text string) {
		s.srv.log("%s: reject: END-OF-MESSAGE from %s: %s; from=<%s> to=<%s> proto=%s helo=<%s>",
			id, s.c.namaddr(), text, env.From, ext[len(ext)-1], proto, helo)
	}
	if body.err != nil {
		if err == nil {
			s.srv.log("warning: %s: the queue stored a message whose content failed (%v); it will be delivered although the client was refused", id, body.err)
		}
		switch {
		case errors.Is(body.err, errBareLF):
			whatsup(body.err.Error())
			return "", reply(s.srv.o.BareNewlineCode, "5.5.2", "%s Error: %s", s.srv.o.Hostname, body.err)
		case errors.Is(body.err, errBareCR):
			whatsup(body.err.Error())
			return "", reply(550, "5.5.2", "%s Error: %s", s.srv.o.Hostname, body.err)
		case errors.Is(body.err, smtp.ErrDataTooLarge):
			rej := reply(552, "5.3.4", "Message size exceeds fixed limit")
			whatsup(replyText(rej))
			return "", rej
		case errors.Is(body.err, smtp.ErrTooLongLine):
			// go-smtp closes the session after this.
			return "", reply(500, "5.5.2", "%s Error: line too long", s.srv.o.Hostname)
		}
		// The client went away or timed out (conn.Read then closes the
		// connection after this reply); it is unlikely to arrive.
		s.srv.log("lost connection after DATA (%d bytes) from %s", body.n, s.c.namaddr())
		s.srv.o.Observer.Lost("DATA")
		return "", reply(421, "4.4.2", "%s Error: timeout exceeded", s.srv.o.Hostname)
	}
	var refusal *smtp.SMTPError
	var refused replier
	if errors.As(err, &refused) {
		code, enh, text := refused.SMTPReply()
		refusal = reply(code, enh, "%s", text)
	}
	if refusal != nil || errors.As(err, &refusal) {
		// The queue's content checks refused the message (too many
		// hops, for one): their reply goes to the client as it is.
		whatsup(replyText(refusal))
		return "", refusal
	}
	if err != nil {
		s.srv.log("warning: %s: queue file write error: %v", id, err)
		if errors.Is(err, syscall.ENOSPC) {
			return "", reply(452, "4.3.1", "Insufficient system storage")
		}
		return "", reply(451, "4.3.0", "Error: queue file write error")
	}
	if !body.eof {
		// The Enqueuer broke its contract: it committed without reading
		// the content to its end, so what it stored is truncated and
		// the rest was never checked.
		s.srv.log("warning: %s: the queue stored a message without reading all of it", id)
		return "", reply(451, "4.3.0", "Error: queue file write error")
	}
	return id, nil
}

// replier is an Enqueuer's refusal of a message (cleanup.Refusal): the
// reply to send, as it is.
type replier interface {
	SMTPReply() (code int, enhanced, text string)
}

func (s *session) Reset() {
	s.mu.Lock()
	s.inTx = false
	s.rcpts = nil
	s.mu.Unlock()
	s.c.setTx(false)
}

func (s *session) Logout() error {
	s.Reset()
	return nil
}

// parsePath turns what go-smtp passes to Mail and Rcpt back into an
// address. go-smtp has removed the angle brackets and any source route,
// and has unquoted the local part ("a b"@example.com arrives as
// a b@example.com), so the local part is quoted again before
// address.Parse checks the whole. The split is at the last '@', as
// address.Parse splits.
func parsePath(s string) (address.Address, error) {
	if s == "" {
		return address.Address{}, nil
	}
	local, domain := address.Split(s)
	if local == "" || domain == "" {
		return address.Parse(s) // fails
	}
	return address.Parse(address.QuoteLocal(local) + "@" + domain)
}
