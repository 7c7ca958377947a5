package smtpd

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maps"
)

// fakeQueue is an in-memory Enqueuer that keeps the Enqueuer contract:
// it reads the body to its end and stores nothing when that fails.
type fakeQueue struct {
	mu   sync.Mutex
	n    int
	msgs []stored
	fail error // returned after the body was read
}

type stored struct {
	id   string
	env  *envelope.Envelope
	body string
}

func (q *fakeQueue) NewID() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.n++
	return fmt.Sprintf("4Q%05X", q.n)
}

func (q *fakeQueue) Enqueue(_ context.Context, id string, env *envelope.Envelope, body io.Reader) error {
	data, err := io.ReadAll(body)
	if err != nil {
		return fmt.Errorf("queue file %s: %w", id, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fail != nil {
		return q.fail
	}
	q.msgs = append(q.msgs, stored{id, env, string(data)})
	return nil
}

func (q *fakeQueue) all() []stored {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]stored(nil), q.msgs...)
}

func (q *fakeQueue) setFail(err error) {
	q.mu.Lock()
	q.fail = err
	q.mu.Unlock()
}

// mailLog collects MailLog lines.
type mailLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *mailLog) add(line string) {
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
}

func (l *mailLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// waitFor waits until a line with the prefix has been logged, and returns
// it.
func (l *mailLog) waitFor(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range l.all() {
			if strings.HasPrefix(line, prefix) {
				return line
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no log line starting %q in:\n%s", prefix, strings.Join(l.all(), "\n"))
	return ""
}

func (l *mailLog) has(line string) bool {
	for _, got := range l.all() {
		if got == line {
			return true
		}
	}
	return false
}

// errTable is a table that cannot answer.
type errTable struct{}

func (errTable) Lookup(context.Context, string) (string, bool, error) {
	return "", false, errors.New("table unavailable")
}

func mustTable(t testing.TB, spec string) maps.Table {
	t.Helper()
	tb, _, err := maps.Open(spec)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// testPolicy: example.com and [127.0.0.1] are local (alice, bob and
// carol@example.com exist), relay.example is relayed to, virtual.example
// is a virtual alias domain with info@ only. mynetworks is given.
func testPolicy(t testing.TB, mynetworks ...string) *Policy {
	t.Helper()
	nl, err := maps.NewNetList(mynetworks)
	if err != nil {
		t.Fatal(err)
	}
	dl := func(elems ...string) *maps.DomainList {
		d, err := maps.NewDomainList(elems, false)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	return &Policy{
		Mynetworks:      nl,
		LimitExceptions: nl, // Postfix's default: $mynetworks
		Local:           dl("example.com", "[127.0.0.1]"),
		Relay:           dl("relay.example"),
		Virtual:         dl("virtual.example"),
		LocalRecipients: mustTable(t, "inline:{ alice=x, bob=x, carol@example.com=x }"),
		VirtualAliases:  mustTable(t, "inline:{ info@virtual.example=alice@example.com, dave@example.com=bob@example.com }"),
		Delimiter:       "+",
	}
}

// Networks that leave out the test client on 127.0.0.1, and that hold it.
const (
	notUs = "192.0.2.0/24"
	us    = "127.0.0.0/8"
)

type testServer struct {
	*Server
	addr string
	q    *fakeQueue
	log  *mailLog
}

const testHost = "mx.example.com"

// start runs a server on 127.0.0.1 with mynetworks = notUs unless mod
// changes the options; tune may change the server before it serves.
func start(t *testing.T, mod func(*Options), tune ...func(*Server)) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startOn(t, l, mod, tune...)
}

// startOn is start on the listener l.
func startOn(t *testing.T, l net.Listener, mod func(*Options), tune ...func(*Server)) *testServer {
	t.Helper()
	ts := &testServer{q: &fakeQueue{}, log: &mailLog{}}
	o := Options{
		Hostname:        testHost,
		Banner:          testHost + " ESMTP mailtee",
		MaxMessageBytes: 10000,
		MaxRecipients:   5,
		Timeout:         5 * time.Second,
		SMTPUTF8:        true,
		Policy:          testPolicy(t, notUs),
		Queue:           ts.q,
		MailLog:         ts.log.add,
	}
	if mod != nil {
		mod(&o)
	}
	ts.Server = New(o)
	ts.errSleep = time.Millisecond
	for _, f := range tune {
		f(ts.Server)
	}
	ts.addr = l.Addr().String()
	done := make(chan error, 1)
	go func() { done <- ts.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

// client is a raw SMTP client: it sends exactly what a test says.
type client struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	return dialFrom(t, addr, "")
}

// dialFrom connects from the loopback address local ("" for any).
func dialFrom(t *testing.T, addr, local string) *client {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, r: bufio.NewReader(nc)}
}

// session dials, reads the greeting and says EHLO.
func (ts *testServer) session(t *testing.T) *client {
	t.Helper()
	c := dial(t, ts.addr)
	c.expect("220 ")
	c.cmd("EHLO client.example")
	return c
}

// reply reads one reply; a multi-line reply comes back with its lines
// joined by "\n".
func (c *client) reply() string {
	c.t.Helper()
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply after %q: %v", lines, err)
		}
		line = strings.TrimSuffix(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatal(err)
	}
}

// cmd sends a command line and returns the reply.
func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.reply()
}

// expect reads a reply and checks that it starts with want.
func (c *client) expect(want string) string {
	c.t.Helper()
	got := c.reply()
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("got %q, want %q...", got, want)
	}
	return got
}

// must sends a command and checks that the reply starts with want.
func (c *client) must(line, want string) string {
	c.t.Helper()
	got := c.cmd(line)
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("%s: got %q, want %q...", line, got, want)
	}
	return got
}

// closed checks that the server has closed the connection.
func (c *client) closed() {
	c.t.Helper()
	if line, err := c.r.ReadString('\n'); err == nil {
		c.t.Fatalf("connection still open: read %q", line)
	}
}

// mail sends a whole transaction; content is sent as is, followed by
// ".\r\n". It returns the reply to the end of data.
func (c *client) mail(from string, to []string, content string) string {
	c.t.Helper()
	c.must("MAIL FROM:<"+from+">", "250 ")
	for _, r := range to {
		c.must("RCPT TO:<"+r+">", "250 ")
	}
	c.must("DATA", "354 ")
	c.send(content + ".\r\n")
	return c.reply()
}

// selfSigned makes a certificate for mx.example.com.
func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: testHost},
		DNSNames:     []string{testHost},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
