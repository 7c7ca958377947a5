package deliver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// envelope is what a sink received in one transaction.
type envelope struct {
	Helo   string
	From   string
	Opts   smtp.MailOptions
	Rcpts  []string
	Data   string
	TLS    bool
	Remote string
}

// sink is an in-process go-smtp server on loopback that records what it
// receives. Its reply hooks are set before it starts.
type sink struct {
	Addr string // "127.0.0.1:port"
	Port string
	srv  *smtp.Server

	rcptErr    map[string]*smtp.SMTPError // per recipient, at RCPT
	lmtpErr    map[string]*smtp.SMTPError // per recipient, after DATA (LMTP)
	dataErr    *smtp.SMTPError            // after DATA
	dropInData bool                       // close the connection while reading DATA

	mu    sync.Mutex
	msgs  []envelope
	conns []string // remote address of each accepted connection
}

type sinkOption func(*sink)

func withTLS(min uint16) sinkOption {
	return func(s *sink) {
		s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{selfSigned()}, MinVersion: min}
	}
}

// startSink serves SMTP on l (a new 127.0.0.1:0 listener when nil).
func startSink(t *testing.T, l net.Listener, opts ...sinkOption) *sink {
	t.Helper()
	if l == nil {
		var err error
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	s := &sink{Addr: l.Addr().String(), rcptErr: map[string]*smtp.SMTPError{}, lmtpErr: map[string]*smtp.SMTPError{}}
	_, s.Port, _ = net.SplitHostPort(s.Addr)
	s.srv = smtp.NewServer(s)
	s.srv.Domain = "sink.test"
	s.srv.ReadTimeout = 10 * time.Second
	s.srv.WriteTimeout = 10 * time.Second
	for _, o := range opts {
		o(s)
	}
	go s.srv.Serve(&countingListener{Listener: l, s: s})
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func (s *sink) messages() []envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]envelope(nil), s.msgs...)
}

func (s *sink) connections() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.conns...)
}

type countingListener struct {
	net.Listener
	s *sink
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.mu.Lock()
		l.s.conns = append(l.s.conns, c.RemoteAddr().String())
		l.s.mu.Unlock()
	}
	return c, err
}

func (s *sink) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &sinkSession{s: s, c: c}, nil
}

type sinkSession struct {
	s   *sink
	c   *smtp.Conn
	env envelope
}

func (ss *sinkSession) Reset()        { ss.env = envelope{} }
func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Mail(from string, opts *smtp.MailOptions) error {
	ss.env = envelope{Helo: ss.c.Hostname(), From: from}
	if opts != nil {
		ss.env.Opts = *opts
	}
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if e := ss.s.rcptErr[to]; e != nil {
		return e
	}
	ss.env.Rcpts = append(ss.env.Rcpts, to)
	return nil
}

func (ss *sinkSession) read(r io.Reader) error {
	if ss.s.dropInData {
		io.CopyN(io.Discard, r, 10)
		ss.c.Conn().Close()
		return errors.New("dropped")
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.env.Data = string(b)
	_, ss.env.TLS = ss.c.TLSConnectionState()
	ss.env.Remote = ss.c.Conn().RemoteAddr().String()
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	if err := ss.read(r); err != nil {
		return err
	}
	if ss.s.dataErr != nil {
		return ss.s.dataErr
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, ss.env)
	ss.s.mu.Unlock()
	return nil
}

func (ss *sinkSession) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	if err := ss.read(r); err != nil {
		return err
	}
	env := ss.env
	env.Rcpts = nil
	for _, rcpt := range ss.env.Rcpts {
		if e := ss.s.lmtpErr[rcpt]; e != nil {
			status.SetStatus(rcpt, e)
			continue
		}
		status.SetStatus(rcpt, nil)
		env.Rcpts = append(env.Rcpts, rcpt)
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, env)
	ss.s.mu.Unlock()
	return nil
}

// rawServer accepts connections on l and hands each to serve.
func rawServer(t *testing.T, l net.Listener, serve func(net.Conn)) {
	t.Helper()
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go serve(c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
}

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

var (
	certOnce sync.Once
	cert     tls.Certificate
)

// selfSigned returns a throw-away certificate for the sinks' STARTTLS.
func selfSigned() tls.Certificate {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "sink.test"},
			DNSNames:     []string{"sink.test"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return cert
}

func testMessage(body string) *Message {
	body = strings.ReplaceAll(body, "\n", "\r\n")
	return &Message{
		ID:   "TESTID",
		From: "sender@example.org",
		Size: int64(len(body)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil },
	}
}
