package metrics

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/smtp"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/dnsresolve"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/qmgr"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/smtpd"
)

// sink is a next hop on loopback: it refuses refuse@ with 550 5.1.1 and
// defers later@ with 450 4.2.0, and takes the rest.
type sink struct {
	addr string
	mu   sync.Mutex
	got  []string
}

func (s *sink) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &sinkSession{s: s}, nil }

type sinkSession struct {
	s     *sink
	rcpts []string
}

func (ss *sinkSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (ss *sinkSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "refuse@"):
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	case strings.HasPrefix(to, "later@"):
		return &gosmtp.SMTPError{Code: 450, EnhancedCode: gosmtp.EnhancedCode{4, 2, 0}, Message: "try later"}
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.got = append(ss.s.got, ss.rcpts...)
	ss.s.mu.Unlock()
	return nil
}
func (ss *sinkSession) Reset()        { ss.rcpts = nil }
func (ss *sinkSession) Logout() error { return nil }

func startSink(t *testing.T, lmtp bool) *sink {
	t.Helper()
	s := &sink{}
	srv := gosmtp.NewServer(s)
	srv.Domain = "sink.test"
	srv.LMTP = lmtp
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.test"},
		DNSNames: []string{"mx.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// syncBuffer is the mail log, written from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// server is mailtee's mail path on loopback, wired to Metrics as the
// master wires it: smtpd (Observer) → queue (Events, journal fsync) →
// qmgr's agents → the sinks; /metrics on an HTTP listener of its own.
type server struct {
	smtpAddr, metricsURL string
	log                  *syncBuffer // the mail log (smtpd's lines, then the queue's)
	smtpdLines           *syncBuffer
	sink, lmtp           *sink
}

func startServer(t *testing.T) *server {
	t.Helper()
	s := &server{log: &syncBuffer{}, smtpdLines: &syncBuffer{}, sink: startSink(t, false), lmtp: startSink(t, true)}
	client := func(lmtp bool) *deliver.Client {
		return &deliver.Client{HeloName: "mx.test", LMTP: lmtp, ConnectTimeout: 10 * time.Second, CommandTimeout: 10 * time.Second,
			Resolver: &dnsresolve.Resolver{Servers: []string{"127.0.0.1:1"}, Timeout: 100 * time.Millisecond}}
	}
	agents := map[string]qmgr.Agent{
		"relay": qmgr.SMTPAgent{Client: client(false)},
		"lmtp":  qmgr.SMTPAgent{Client: client(true)},
	}
	mgr := qmgr.New(agents)
	var q *queue.Queue
	m := New(Options{QueuePath: "/test/queue", Agent: AgentOf(agents),
		Queue: func(buf []queue.Shape) []queue.Shape { return q.Shapes(buf) }})
	queue.ObserveFsync(m.ObserveFsync)
	t.Cleanup(func() { queue.ObserveFsync(nil) })
	logger := maillog.New(s.log, "mx.test")
	var err error
	q, err = queue.Open(queue.Options{
		Dir: t.TempDir(),
		Route: func(_ context.Context, rcpt string) (envelope.Hop, error) {
			if strings.HasSuffix(rcpt, "@lmtp.example") {
				return envelope.Hop{Transport: "lmtp", Nexthop: "inet:" + s.lmtp.addr}, nil
			}
			return envelope.Hop{Transport: "relay", Nexthop: "[127.0.0.1]:" + strings.TrimPrefix(s.sink.addr, "127.0.0.1:")}, nil
		},
		Deliver: mgr.Deliver,
		Bounce: func(_ context.Context, _ *queue.Message, failed []int, notified func([]int) error) error {
			return notified(failed)
		},
		Events: m.Events(qmgr.Events{Log: logger}),
	})
	if err != nil {
		t.Fatal(err)
	}
	go q.Run()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		q.Close(ctx)
	})

	notUs, err := maps.NewNetList([]string{"192.0.2.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	relay, err := maps.NewDomainList([]string{"sink.example", "lmtp.example"}, false)
	if err != nil {
		t.Fatal(err)
	}
	local, err := maps.NewDomainList([]string{"mx.test"}, false)
	if err != nil {
		t.Fatal(err)
	}
	srv := smtpd.New(smtpd.Options{
		Hostname: "mx.test", MaxMessageBytes: 1 << 20, MaxRecipients: 50, Timeout: 10 * time.Second,
		TLS:    &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, MinVersion: tls.VersionTLS12},
		Policy: &smtpd.Policy{Mynetworks: notUs, Local: local, Relay: relay},
		Queue:  q,
		MailLog: func(line string) {
			fmt.Fprintln(s.smtpdLines, line)
			logger.Printf("smtpd", "%s", line)
		},
		Observer: m.SMTPD(),
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.smtpAddr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})

	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(hl)
	t.Cleanup(func() { hs.Close() })
	s.metricsURL = "http://" + hl.Addr().String() + "/metrics"
	return s
}

// scrape GETs /metrics over the loopback listener; the body too, for
// the families declared without a series.
func (s *server) scrape(t *testing.T) (samples, string) {
	t.Helper()
	resp, err := http.Get(s.metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", s.metricsURL, resp.StatusCode, err)
	}
	ss, err := parseExposition(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return ss, string(body)
}

// send submits one message over SMTP; a refused recipient is skipped,
// as a client would.
func send(t *testing.T, addr string, starttls bool, from string, to ...string) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if starttls {
		if err := c.StartTLS(&tls.Config{InsecureSkipVerify: true, ServerName: "mx.test"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Mail(from); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range to {
		if err := c.Rcpt(r); err == nil {
			n++
		}
	}
	if n == 0 {
		t.Fatal("every recipient refused")
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "From: %s\r\nSubject: metrics test\r\n\r\nHello.\r\n", from)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

// dropInData starts a message and hangs up in the middle of its DATA.
func dropInData(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn)
	expect := func(code string) {
		t.Helper()
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %s: %v", code, err)
			}
			if !strings.HasPrefix(line, code) {
				t.Fatalf("want %s, got %q", code, line)
			}
			if len(line) > 3 && line[3] == ' ' {
				return
			}
		}
	}
	expect("220")
	for _, c := range []struct{ cmd, code string }{
		{"EHLO client.test", "250"}, {"MAIL FROM:<a@client.test>", "250"}, {"RCPT TO:<ok3@sink.example>", "250"}, {"DATA", "354"},
	} {
		fmt.Fprintf(conn, "%s\r\n", c.cmd)
		expect(c.code)
	}
	fmt.Fprintf(conn, "Subject: cut short\r\n\r\nhalf a")
}

// waitFor scrapes until ok is satisfied; generous, for a loaded machine.
func (s *server) waitFor(t *testing.T, what string, ok func(samples) bool) samples {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ss, _ := s.scrape(t)
		if ok(ss) {
			return ss
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 60s; mail log:\n%s", what, s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runTraffic sends what every family needs: a message over TLS with
// recipients delivered, refused by the next hop (550), deferred (450)
// and refused at RCPT (relay access denied, 554); one by LMTP; one cut
// short in DATA. It returns the scrape once all of it is counted.
func runTraffic(t *testing.T, s *server) samples {
	send(t, s.smtpAddr, true, "a@client.test",
		"ok1@sink.example", "ok2@sink.example", "refuse@sink.example", "later@sink.example", "x@elsewhere.example")
	send(t, s.smtpAddr, false, "b@client.test", "u@lmtp.example")
	dropInData(t, s.smtpAddr)
	return s.waitFor(t, "deliveries counted", func(ss samples) bool {
		v := func(name string, l ...string) float64 { x, _ := ss.find(name, l...); return x }
		return v("postfix_smtp_messages_processed_total", "status=sent") >= 2 &&
			v("postfix_smtp_messages_processed_total", "status=bounced") >= 1 &&
			v("postfix_smtp_messages_processed_total", "status=deferred") >= 1 &&
			v("postfix_lmtp_messages_processed_total", "status=sent") >= 1 &&
			v("postfix_qmgr_messages_removed_total") >= 1 &&
			v("postfix_smtpd_connections_lost_total", "after_stage=DATA") >= 1 &&
			v("postfix_smtpd_disconnects_total") >= 3 &&
			// The deferred message is reported before its pass ends.
			v("postfix_showq_queue_depth", "queue=deferred") >= 1
	})
}

func TestRealTraffic(t *testing.T) {
	s := startServer(t)
	ss := runTraffic(t, s)
	check := func(name string, want float64, labels ...string) {
		t.Helper()
		if got := ss.get(t, name, labels...); got != want {
			t.Errorf("%s%v = %g, want %g", name, labels, got, want)
		}
	}
	check("postfix_smtpd_connects_total", 3)
	check("postfix_smtpd_disconnects_total", 3)
	check("postfix_smtpd_messages_processed_total", 3, "sasl_method=NONE")
	check("postfix_smtpd_messages_rejected_total", 1, "code=554")
	check("postfix_smtpd_connections_lost_total", 1, "after_stage=DATA")
	check("postfix_smtpd_tls_connections_total", 1, "trust=Anonymous", "protocol=TLSv1.3")
	check("postfix_cleanup_messages_processed_total", 2)
	check("postfix_qmgr_messages_inserted_recipients_sum", 5)
	check("postfix_smtp_messages_processed_total", 2, "status=sent")
	check("postfix_smtp_bounced_messages_by_dsn_total", 1, "dsn=5.1.1")
	check("postfix_smtp_deferred_messages_by_dsn_total", 1, "dsn=4.2.0")
	check("postfix_smtp_delivery_delay_seconds_count", 3, "stage=transmission")
	check("postfix_lmtp_delivery_delay_seconds_count", 1, "stage=connection_setup")
	check("postfix_showq_queue_depth", 1, "queue=deferred")
	check("postfix_up", 1, "path=/test/queue")
	check("mailtee_deliveries_total", 1, "transport=relay", "status=deferred", "copy=no")
	if got := ss.get(t, "mailtee_journal_fsync_seconds_count"); got < 1 {
		t.Errorf("journal fsyncs observed: %g, want at least one", got)
	}
	s.sink.mu.Lock()
	got := strings.Join(s.sink.got, " ")
	s.sink.mu.Unlock()
	if got != "ok1@sink.example ok2@sink.example" {
		t.Errorf("the sink got %q", got)
	}
	agreeWithExporter(t, s, ss)

	// A client that says STARTTLS and leaves before the handshake.
	conn, err := net.DialTimeout("tcp", s.smtpAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn)
	br.ReadString('\n')
	fmt.Fprintf(conn, "EHLO client.test\r\n")
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "250 ") {
			break
		}
	}
	fmt.Fprintf(conn, "STARTTLS\r\n")
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "220") {
		t.Fatalf("STARTTLS: %q", line)
	}
	conn.Close()
	s.waitFor(t, "the lost STARTTLS counted", func(ss samples) bool {
		v, _ := ss.find("postfix_smtpd_connections_lost_total", "after_stage=STARTTLS")
		return v == 1
	})
}

// agreeWithExporter reads the mail log with postfix_exporter's own
// patterns (Hsn723/postfix_exporter, exporter/postfix_exporter.go) and
// checks that the families mailtee feeds from its events count the
// same: a dashboard shows the same figures whether it reads mailtee's
// /metrics or a postfix_exporter tailing mailtee's log.
func agreeWithExporter(t *testing.T, s *server, ss samples) {
	t.Helper()
	var (
		rejects  = regexp.MustCompile(`^NOQUEUE: reject: RCPT from \S+: ([0-9]+) `)
		lost     = regexp.MustCompile(`^(?:NOQUEUE: )?lost connection after (\w+) from `)
		delivery = regexp.MustCompile(`mailtee/(\w+)\[\d+\]: .*, relay=(\S+), .*, delays=([0-9\.]+)/([0-9\.]+)/([0-9\.]+)/([0-9\.]+), .*, status=(\w+) `)
	)
	count := map[string]float64{}
	for _, line := range strings.Split(s.smtpdLines.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "connect from "):
			count["postfix_smtpd_connects_total"]++
		case strings.HasPrefix(line, "disconnect from "):
			count["postfix_smtpd_disconnects_total"]++
		case lost.MatchString(line):
			count["postfix_smtpd_connections_lost_total{after_stage="+lost.FindStringSubmatch(line)[1]+"}"]++
		case strings.Contains(line, ": client="):
			count["postfix_smtpd_messages_processed_total{sasl_method=NONE}"]++
		case rejects.MatchString(line):
			count["postfix_smtpd_messages_rejected_total{code="+rejects.FindStringSubmatch(line)[1]+"}"]++
		}
	}
	for _, line := range strings.Split(s.log.String(), "\n") {
		if m := delivery.FindStringSubmatch(line); m != nil {
			agent := DefaultAgent(m[1]) // relay is smtp(8), as the exporter's --postfix.smtp_labels=relay
			count["postfix_"+agent+"_messages_processed_total{status="+m[7]+"}"]++
		}
	}
	if len(count) < 7 {
		t.Fatalf("too few lines matched the exporter's patterns (%v); mail log:\n%s", count, s.log.String())
	}
	for key, want := range count {
		name, labels, _ := strings.Cut(strings.TrimSuffix(key, "}"), "{")
		var ls []string
		if labels != "" {
			ls = strings.Split(labels, ",")
		}
		if got, _ := ss.find(name, ls...); got != want {
			t.Errorf("%s: /metrics says %g, the exporter's patterns on the mail log %g", key, got, want)
		}
	}
}
