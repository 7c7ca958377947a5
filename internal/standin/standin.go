// Package standin is a loopback stand-in for the receiving side of
// Google Workspace or Microsoft 365: an SMTP server (go-smtp) that
// accepts everything, except that it enforces the providers' receiving
// limits as they do and answers in their words when a sender exceeds
// them. Tests point mailtee at it to check that mailtee keeps to the
// limits; users run it (cmd/provider-standin) to try their settings.
//
// Limits are sliding windows ("at most N in any span of Per") counted
// per accepted recipient at the end of DATA, with its own small counter
// (a log of acceptance times per key), not internal/ratelimit's limiter,
// which is what it tests. A recipient whose RCPT was accepted holds a
// place until its transaction ends, so concurrent sessions cannot
// together go past a limit.
//
// Where each provider answers, and what the stand-in does:
//
//   - A mailbox over its receiving rate (-mailbox-rate): Google answers
//     RCPT with 450 4.2.1 (it names the recipient, so it comes at RCPT
//     in Google's own logs: "in reply to RCPT TO command"); Microsoft
//     with 550 5.2.122, also at RCPT here (it rejects per recipient).
//   - A sender over its rate (-sender-rate): Google counts per sending
//     address and answers 421 4.7.28 and closes the connection;
//     Microsoft counts per sender-recipient pair (33% of the mailbox's
//     limit) and answers that recipient 550 5.2.121.
//   - Lockout (-lockout): a mailbox that was offered mail beyond its
//     limit is locked for that long and refuses everything with a
//     permanent reply: Google's 550 5.2.1 "account disabled", Microsoft's
//     550 5.2.122 (it blocks the mailbox for an hour). A sender that
//     ignores the temporary reply thus makes mail bounce.
//   - Storm: every recipient is answered with one reply for a while
//     after start (or after SetStorm), then the stand-in behaves.
package standin

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/textproto"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtee/mailtee/internal/ratelimit"
)

// Options configure a stand-in.
type Options struct {
	Addr   string // listen address; 127.0.0.1:0 when empty
	Flavor string // Google or Microsoft365; Google when empty

	MailboxRate []ratelimit.Window // per recipient mailbox; none when nil
	// SenderRate is per sending address (Google) or per sender-recipient
	// pair (Microsoft 365); none when nil.
	SenderRate []ratelimit.Window
	// Lockout is how long a mailbox that was offered mail beyond its
	// limit refuses everything (permanently); 0 for never.
	Lockout time.Duration

	// TLS is offered with STARTTLS; a self-signed certificate for the
	// flavor's host name is made when nil, so STARTTLS is always there.
	TLS *tls.Config

	// Storm, a reply ("421 4.7.28", text optional), answers every
	// recipient for StormFor after Start.
	Storm    string
	StormFor time.Duration

	// Record, when set, gets a JSON line per accepted recipient and per
	// refusal.
	Record io.Writer
	// Log, when set, gets a line per accepted or refused recipient.
	Log *log.Logger
}

// Record is one recipient of one accepted message.
type Record struct {
	Time      time.Time `json:"time"`
	From      string    `json:"from"`
	Rcpt      string    `json:"rcpt"`
	MessageID string    `json:"message_id,omitempty"`
	Size      int       `json:"size"`
	TLS       bool      `json:"tls"`
	// Remote is the sender's address (ip:port): which node of a fleet
	// delivered it.
	Remote string `json:"remote,omitempty"`
}

// Refusal is one refused recipient.
type Refusal struct {
	Time  time.Time `json:"time"`
	From  string    `json:"from"`
	Rcpt  string    `json:"rcpt"`
	Reply string    `json:"reply"`
	// Why: "mailbox-rate", "sender-rate", "locked" or "storm".
	Why string `json:"why"`
}

// Server is a running stand-in.
type Server struct {
	o       Options
	srv     *smtp.Server
	l       net.Listener
	replies struct{ mailbox, sender, locked *smtp.SMTPError }

	mu         sync.Mutex
	mailbox    counter
	sender     counter
	locked     map[string]time.Time // mailbox → locked until
	storm      *smtp.SMTPError
	stormUntil time.Time
	accepted   []Record
	refused    []Refusal
	rec        *json.Encoder
}

// Start listens and serves until Close.
func Start(o Options) (*Server, error) {
	if o.Flavor == "" {
		o.Flavor = Google
	}
	rf, ok := replyFor[o.Flavor]
	if !ok {
		return nil, fmt.Errorf("flavor %q: want %s or %s", o.Flavor, Google, Microsoft365)
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	s := &Server{o: o, locked: map[string]time.Time{}}
	s.mailbox.init()
	s.sender.init()
	s.replies.mailbox = known(o.Flavor, rf.mailbox)
	s.replies.sender = known(o.Flavor, rf.sender)
	s.replies.locked = known(o.Flavor, rf.locked)
	if o.Record != nil {
		s.rec = json.NewEncoder(o.Record)
	}
	if o.Storm != "" && o.StormFor > 0 {
		if err := s.SetStormErr(o.Storm, o.StormFor); err != nil {
			return nil, err
		}
	}
	host := "mx.google.com"
	if o.Flavor == Microsoft365 {
		host = "standin.mail.protection.outlook.com"
	}
	if o.TLS == nil {
		cfg, err := selfSigned(host)
		if err != nil {
			return nil, err
		}
		o.TLS = cfg
	}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, c: c}, nil
	}))
	s.srv.Domain = host
	s.srv.TLSConfig = o.TLS
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.ReadTimeout = 5 * time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.MaxMessageBytes = 35 << 20 // Microsoft's default; Google's is larger
	l, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("provider stand-in: %w", err)
	}
	s.l = l
	go s.srv.Serve(l)
	return s, nil
}

// Addr is the address the stand-in listens on.
func (s *Server) Addr() string { return s.l.Addr().String() }

// Close stops the stand-in.
func (s *Server) Close() error { return s.srv.Close() }

// Accepted returns every recipient accepted so far, in order.
func (s *Server) Accepted() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.accepted...)
}

// Refused returns every refused recipient so far, in order.
func (s *Server) Refused() []Refusal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Refusal(nil), s.refused...)
}

// MaxInWindow is the most acceptances for rcpt (case-insensitive) in
// any span of per: what a window of that span saw at its fullest.
func (s *Server) MaxInWindow(rcpt string, per time.Duration) int {
	rcpt = strings.ToLower(rcpt)
	s.mu.Lock()
	var ts []time.Time
	for _, r := range s.accepted {
		if strings.ToLower(r.Rcpt) == rcpt {
			ts = append(ts, r.Time)
		}
	}
	s.mu.Unlock()
	return MaxInSpan(ts, per)
}

// MaxInSpan is the most of ts (sorted or not; sorted in place) within
// any half-open span [t, t+per): what a sliding window of per saw at its
// fullest. Tests use it on the acceptance times of a site.
func MaxInSpan(ts []time.Time, per time.Duration) int {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	best, lo := 0, 0
	for hi := range ts {
		for ts[hi].Sub(ts[lo]) >= per {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// SetStorm answers every recipient with reply for d from now ("421
// 4.7.28"; d <= 0 ends a storm). It panics on a malformed reply; use
// SetStormErr for one from a user.
func (s *Server) SetStorm(reply string, d time.Duration) {
	if err := s.SetStormErr(reply, d); err != nil {
		panic(err)
	}
}

// SetStormErr is SetStorm returning what is wrong with reply.
func (s *Server) SetStormErr(reply string, d time.Duration) error {
	r, err := ParseReply(s.o.Flavor, reply)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.storm, s.stormUntil = r, time.Now().Add(d)
	s.mu.Unlock()
	return nil
}

// Locked says whether mailbox refuses everything now (lockout).
func (s *Server) Locked(mailbox string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Now().Before(s.locked[strings.ToLower(mailbox)])
}

// senderKey is what SenderRate counts: the address for Google, the
// sender-recipient pair for Microsoft 365.
func (s *Server) senderKey(from, rcpt string) string {
	if s.o.Flavor == Microsoft365 {
		return strings.ToLower(from) + " " + rcpt
	}
	return strings.ToLower(from)
}

// admit decides on one recipient (lower-cased) at RCPT: nil, and a
// place held in each counter, or the reply and why.
func (s *Server) admit(from, rcpt string, now time.Time) (*smtp.SMTPError, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.storm != nil && now.Before(s.stormUntil) {
		return s.storm, "storm"
	}
	if now.Before(s.locked[rcpt]) {
		return s.replies.locked, "locked"
	}
	if s.mailbox.over(rcpt, s.o.MailboxRate, now) {
		if s.o.Lockout > 0 {
			s.locked[rcpt] = now.Add(s.o.Lockout)
		}
		return s.replies.mailbox, "mailbox-rate"
	}
	sk := s.senderKey(from, rcpt)
	if s.sender.over(sk, s.o.SenderRate, now) {
		return s.replies.sender, "sender-rate"
	}
	s.mailbox.hold(rcpt)
	s.sender.hold(sk)
	return nil, ""
}

func (s *Server) refuse(r Refusal) {
	s.mu.Lock()
	s.refused = append(s.refused, r)
	if s.rec != nil {
		s.rec.Encode(struct {
			Event string `json:"event"`
			Refusal
		}{"refused", r})
	}
	s.mu.Unlock()
	if s.o.Log != nil {
		s.o.Log.Printf("from=<%s>, to=<%s>, status=refused (%s) [%s]", r.From, r.Rcpt, r.Reply, r.Why)
	}
}

// release gives back the places held for rcpts that were not accepted.
func (s *Server) release(from string, rcpts []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rcpts {
		s.mailbox.release(r)
		s.sender.release(s.senderKey(from, r))
	}
}

// accept counts and records rcpts of an accepted message.
func (s *Server) accept(base Record, rcpts []string) {
	s.mu.Lock()
	var recs []Record
	for _, r := range rcpts {
		s.mailbox.commit(r, base.Time)
		s.sender.commit(s.senderKey(base.From, r), base.Time)
		rec := base
		rec.Rcpt = r
		s.accepted = append(s.accepted, rec)
		recs = append(recs, rec)
		if s.rec != nil {
			s.rec.Encode(struct {
				Event string `json:"event"`
				Record
			}{"accepted", rec})
		}
	}
	s.mu.Unlock()
	if s.o.Log != nil {
		for _, r := range recs {
			s.o.Log.Printf("from=<%s>, to=<%s>, size=%d, tls=%v, message-id=%s, status=accepted", r.From, r.Rcpt, r.Size, r.TLS, r.MessageID)
		}
	}
}

type session struct {
	s     *Server
	c     *smtp.Conn
	from  string
	rcpts []string // lower-cased, places held
}

func (ss *session) Reset() {
	ss.s.release(ss.from, ss.rcpts)
	ss.from, ss.rcpts = "", nil
}

func (ss *session) Logout() error {
	ss.Reset()
	return nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	rcpt := strings.ToLower(to)
	now := time.Now()
	reply, why := ss.s.admit(ss.from, rcpt, now)
	if reply == nil {
		ss.rcpts = append(ss.rcpts, rcpt)
		return nil
	}
	ss.s.refuse(Refusal{Time: now, From: ss.from, Rcpt: rcpt, Reply: format(reply), Why: why})
	if reply.Code == 421 {
		// 421 closes the connection (RFC 5321 3.8); go-smtp would keep
		// it open, so the reply goes out here and the connection ends.
		nc := ss.c.Conn()
		nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(nc, format(reply)+"\r\n")
		nc.Close()
	}
	return reply
}

func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := ss.c.TLSConnectionState()
	base := Record{Time: time.Now(), From: ss.from, MessageID: messageID(b), Size: len(b), TLS: isTLS,
		Remote: ss.c.Conn().RemoteAddr().String()}
	ss.s.accept(base, ss.rcpts)
	ss.rcpts = nil // counted: Reset must not give them back
	return nil
}

// messageID is the message's Message-ID field, "" when none.
func messageID(b []byte) string {
	h, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(b))).ReadMIMEHeader()
	return strings.TrimSpace(h.Get("Message-Id"))
}

// counter is a log of acceptance times per key, with the places held
// by transactions still open.
type counter struct {
	times map[string][]time.Time
	held  map[string]int
}

func (c *counter) init() {
	c.times, c.held = map[string][]time.Time{}, map[string]int{}
}

// over says whether one more for key now would go past any window.
func (c *counter) over(key string, ws []ratelimit.Window, now time.Time) bool {
	if len(ws) == 0 {
		return false
	}
	ts := c.times[key]
	longest := time.Duration(0)
	for _, w := range ws {
		longest = max(longest, w.Per)
	}
	// Forget what no window can see any more.
	i := 0
	for i < len(ts) && now.Sub(ts[i]) >= longest {
		i++
	}
	ts = ts[i:]
	c.times[key] = ts
	for _, w := range ws {
		n := c.held[key]
		for j := len(ts) - 1; j >= 0 && now.Sub(ts[j]) < w.Per; j-- {
			n++
		}
		if n >= w.N {
			return true
		}
	}
	return false
}

func (c *counter) hold(key string) { c.held[key]++ }

func (c *counter) release(key string) {
	if c.held[key]--; c.held[key] <= 0 {
		delete(c.held, key)
	}
}

func (c *counter) commit(key string, t time.Time) {
	c.release(key)
	c.times[key] = append(c.times[key], t)
}

// selfSigned makes a certificate for host and 127.0.0.1, valid a day.
func selfSigned(host string) (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, nil
}
