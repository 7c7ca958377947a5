package smtpd

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtee/mailtee/internal/anvil"
)

// Client limits, the process limit and stress mode.
//
// Postfix spreads these over three programs; mailtee does their work in
// the listener (admit) and the session:
//
//   - anvil(8) counts each client's connections and its connection,
//     message and recipient rates; smtpd(8) refuses a client over
//     smtpd_client_connection_count_limit or
//     smtpd_client_connection_rate_limit with "421 4.7.0 HOST Error: too
//     many connections from ADDR" instead of the greeting, MAIL over
//     smtpd_client_message_rate_limit with "450 4.7.1 Error: too much
//     mail from ADDR", RCPT over smtpd_client_recipient_rate_limit with
//     "450 4.7.1 Error: too many recipients from ADDR", each with a
//     warning in the log (smtpd.c). Clients in
//     smtpd_client_event_limit_exceptions are not counted at all.
//   - master(8) runs at most the service's process limit
//     (default_process_limit) of smtpd processes; a client past it waits
//     in the kernel's listen queue until a process is free. Once the
//     limit is reached, master starts new processes with "-o stress=yes"
//     for the next 1000 seconds (master_avail.c), and the parameters
//     whose defaults are ${stress?{a}:{b}} take their stress values:
//     smtpd_timeout 10s instead of 300s, smtpd_hard_error_limit 1,
//     smtpd_junk_command_limit 1.
//   - smtpd(8) counts NOOP, VRFY, ETRN, RSET, HELO and EHLO as junk; past
//     smtpd_junk_command_limit each one is also an error, so that a
//     session of junk ends at smtpd_hard_error_limit (junk.go).
//
// Where mailtee differs, it is to keep idle sessions from starving others,
// which Postfix only partly does:
//
//   - Stress mode applies at once to every session, not only to sessions
//     that start later: when it begins, a session already waiting for a
//     command gets the stress timeout counted from when it began to wait.
//     In Postfix the processes started before keep their 300 s, so 100
//     idle clients keep every other client out for five minutes.
//   - A client in smtpd_client_event_limit_exceptions (by default
//     $mynetworks) is served even when MaxClients sessions are open, up
//     to twice the limit: a flood from outside cannot lock out the
//     networks that mailtee relays for. In Postfix they share the limit.
//   - Waiting clients are accepted and wait without a greeting, not in
//     the kernel's queue, so that an exempt client behind them is not
//     held up. At most MaxClients of them wait; a client past that is
//     answered "421 4.3.2 All server ports are busy" (postscreen(8)'s
//     reply when its queue is full).

// SessionLimits are the limits whose Postfix defaults depend on stress
// mode.
type SessionLimits struct {
	Timeout          time.Duration // smtpd_timeout, for each read and write
	HardErrorLimit   int           // smtpd_hard_error_limit
	SoftErrorLimit   int           // smtpd_soft_error_limit
	JunkCommandLimit int           // smtpd_junk_command_limit
	StartTLSTimeout  time.Duration // smtpd_starttls_timeout
}

// orDefaults fills the zero fields of l from d.
func (l SessionLimits) orDefaults(d SessionLimits) SessionLimits {
	if l.Timeout <= 0 {
		l.Timeout = d.Timeout
	}
	if l.HardErrorLimit <= 0 {
		l.HardErrorLimit = d.HardErrorLimit
	}
	if l.SoftErrorLimit <= 0 {
		l.SoftErrorLimit = d.SoftErrorLimit
	}
	if l.JunkCommandLimit <= 0 {
		l.JunkCommandLimit = d.JunkCommandLimit
	}
	if l.StartTLSTimeout <= 0 {
		l.StartTLSTimeout = d.StartTLSTimeout
	}
	return l
}

// ClientLimits are the per-client limits Postfix keeps in anvil(8); zero
// means no limit.
type ClientLimits struct {
	ConnectionCount int           // smtpd_client_connection_count_limit
	ConnectionRate  int           // smtpd_client_connection_rate_limit
	MessageRate     int           // smtpd_client_message_rate_limit
	RecipientRate   int           // smtpd_client_recipient_rate_limit
	TimeUnit        time.Duration // anvil_rate_time_unit; 0 means 60s
}

func (l ClientLimits) any() bool {
	return l.ConnectionCount > 0 || l.ConnectionRate > 0 || l.MessageRate > 0 || l.RecipientRate > 0
}

// stressPeriod is how long stress mode lasts after the process limit was
// last reached (master_avail.c: "keep creating such processes until the
// process count is below the limit for at least 1000 seconds").
const stressPeriod = 1000 * time.Second

// limits are the session limits now: stress mode or not.
func (s *Server) limits() *SessionLimits {
	if s.Stressed() {
		return &s.stressed
	}
	return &s.normal
}

// Stressed reports whether the server is in stress mode.
func (s *Server) Stressed() bool {
	until := s.stressUntil.Load()
	return until != 0 && time.Now().UnixNano() < until
}

// connLimits is where a connection stands with the limits.
type connLimits struct {
	// counted: in the anvil table (not exempt by
	// smtpd_client_event_limit_exceptions).
	counted bool
	place   place
	// admitted is closed when a waiting client gets its place (nil for
	// a client that never waited); gone when the connection is closed.
	admitted, gone chan struct{}
}

// listener admits connections within the limits.
type listener struct {
	net.Listener
	srv *Server
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if c := l.srv.admit(nc, l.Addr()); c != nil {
			return c, nil
		}
	}
}

// admit wraps a new connection and gives it a place, or makes it wait for
// one, or refuses it with a 421 and returns nil. la is the listener's
// address, for the log.
func (s *Server) admit(nc net.Conn, la net.Addr) *conn {
	c := &conn{Conn: nc, srv: s, name: "unknown", limit: connLimits{gone: make(chan struct{})}}
	if _, ok := nc.(*tls.Conn); ok {
		// smtps: TLS from the first byte (starttls.go).
		c.tls, c.st.wrapped = true, true
	}
	if ap, err := netip.ParseAddrPort(nc.RemoteAddr().String()); err == nil {
		c.addr = ap.Addr().Unmap()
		c.astr = c.addr.String()
		if c.addr.IsLoopback() {
			c.name = "localhost"
		}
	}
	exempt := false
	if ex := s.policy.Load().LimitExceptions; ex != nil && c.addr.IsValid() {
		// A lookup error only loses the exemption.
		exempt, _ = ex.Match(context.Background(), c.addr)
	}
	s.log("connect from %s", c.namaddr())
	s.o.Observer.Connect()

	c.limit.counted = !exempt && s.anvil != nil && c.addr.IsValid()
	if c.limit.counted {
		count, rate := s.anvil.Connect(c.addr)
		cl := s.o.Client
		switch {
		case cl.ConnectionCount > 0 && count > cl.ConnectionCount:
			s.refuse(c, fmt.Sprintf("warning: Connection concurrency limit exceeded: %d from %s for service smtp", count, c.namaddr()),
				"421 4.7.0 %s Error: too many connections from %s", s.o.Hostname, c.addrString())
			return nil
		case cl.ConnectionRate > 0 && rate > cl.ConnectionRate:
			s.refuse(c, fmt.Sprintf("warning: Connection rate limit exceeded: %d from %s for service smtp", rate, c.namaddr()),
				"421 4.7.0 %s Error: too many connections from %s", s.o.Hostname, c.addrString())
			return nil
		}
	}

	max := s.o.MaxClients
	s.mu.Lock()
	switch {
	case max <= 0 || s.active < max || exempt && s.active < 2*max:
		s.active++
		c.limit.place = placeActive
	case len(s.waiting) < max:
		s.waiting = append(s.waiting, c)
		c.limit.place = placeWaiting
		c.limit.admitted = make(chan struct{})
	}
	if c.limit.place != placeNone {
		s.conns[c] = struct{}{}
	}
	full := max > 0 && (s.active >= max || c.limit.place == placeWaiting)
	warn, started := false, false
	if full {
		// Decided under s.mu, so that one admission logs and starts it.
		started = !s.Stressed()
		s.stressUntil.Store(time.Now().Add(stressPeriod).UnixNano())
		if warn = time.Since(s.busyWarn) > stressPeriod; warn {
			s.busyWarn = time.Now()
		}
	}
	s.mu.Unlock()

	if warn {
		port := "smtp"
		if ta, ok := la.(*net.TCPAddr); ok {
			port = fmt.Sprint(ta.Port)
		}
		s.log("warning: service \"smtp\" (%s) has reached its process limit \"%d\": new clients may experience noticeable delays", port, max)
		s.log("warning: to avoid this condition, increase the process count in master.cf or reduce the service time per client")
		s.log("warning: see http://www.postfix.org/STRESS_README.html for examples of stress-adapting configuration settings")
	}
	if started {
		s.startStress()
	}
	if c.limit.place == placeNone {
		s.refuse(c, fmt.Sprintf("NOQUEUE: reject: CONNECT from %s: all server ports busy", c.namaddr()),
			"421 4.3.2 All server ports are busy")
		return nil
	}
	return c
}

// refuse answers 421 (format and args) to a connection that was not
// admitted, in place of the greeting, and closes it.
func (s *Server) refuse(c *conn, logLine, format string, args ...any) {
	s.log("%s", logLine)
	s.refusing.Add(1)
	go func() {
		defer s.refusing.Done()
		c.Conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c.Conn, format+"\r\n", args...)
		c.Conn.Close()
		if c.limit.counted {
			s.anvil.Disconnect(c.addr)
		}
		s.log("disconnect from %s commands=0/0", c.namaddr())
		s.o.Observer.Disconnect()
	}()
}

// startStress applies stress mode to the sessions already open: one
// waiting for a command gets the stress timeout at once, counted from
// when it began to wait.
func (s *Server) startStress() {
	st := s.stressed
	s.log("warning: service \"smtp\" in stress mode: smtpd_timeout %s, smtpd_hard_error_limit %d, smtpd_junk_command_limit %d",
		st.Timeout, st.HardErrorLimit, st.JunkCommandLimit)
	if st.Timeout <= 0 || s.normal.Timeout > 0 && st.Timeout >= s.normal.Timeout {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.shortenWait(st.Timeout)
	}
}

// waitForPlace holds a client that came when every place was taken until
// a session ends, as Postfix's clients wait in the listen queue. It
// returns an error when the server shuts down or the connection is
// closed meanwhile.
func (c *conn) waitForPlace() error {
	if c.limit.admitted == nil {
		return nil
	}
	select {
	case <-c.limit.admitted:
		return nil
	case <-c.srv.stop:
	case <-c.limit.gone:
	}
	c.Close()
	return net.ErrClosed
}

// forget removes a closed connection from the counts, and gives its place
// to the client that has waited longest.
func (s *Server) forget(c *conn) {
	if c.limit.counted {
		s.anvil.Disconnect(c.addr)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; !ok {
		return
	}
	delete(s.conns, c)
	switch c.limit.place {
	case placeWaiting:
		for i, w := range s.waiting {
			if w == c {
				s.waiting = append(s.waiting[:i], s.waiting[i+1:]...)
				break
			}
		}
		return
	case placeActive:
		s.active--
	}
	for len(s.waiting) > 0 && (s.o.MaxClients <= 0 || s.active < s.o.MaxClients) {
		w := s.waiting[0]
		s.waiting = s.waiting[1:]
		w.limit.place = placeActive
		s.active++
		close(w.limit.admitted)
	}
}

// overRate counts a MAIL or RCPT of a limited client and returns Postfix's
// refusal when the client is over its rate.
func (c *conn) overRate(e anvil.Event) *smtp.SMTPError {
	limit := c.srv.o.Client.MessageRate
	if e == anvil.Recipient {
		limit = c.srv.o.Client.RecipientRate
	}
	if !c.limit.counted || limit <= 0 {
		return nil
	}
	rate := c.srv.anvil.Add(c.addr, e)
	if rate <= limit {
		return nil
	}
	if e == anvil.Message {
		c.srv.log("warning: Message delivery request rate limit exceeded: %d from %s for service smtp", rate, c.namaddr())
		return reply(450, "4.7.1", "Error: too much mail from %s", c.addrString())
	}
	c.srv.log("warning: Recipient address rate limit exceeded: %d from %s for service smtp", rate, c.namaddr())
	return reply(450, "4.7.1", "Error: too many recipients from %s", c.addrString())
}
