package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailtee/mailtee/internal/asuser"
	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/dsn"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/local"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/route"
	"github.com/mailtee/mailtee/internal/smtpd"
)

// server is a running mailtee: the SMTP server, the queue and the
// delivery agents, wired from one main.cf.
type server struct {
	cfg *config.Config // as started: listeners, queue, timers, TLS
	// rt is what a reload replaces: tables and everything built on them.
	rt    atomic.Pointer[runtime]
	log   *maillog.Logger
	q     *queue.Queue
	smtp  *deliver.Client
	lmtp  *deliver.Client
	smtpd *smtpd.Server
	host  string
	// logFlush writes out buffered maillog_file lines; nil when logging
	// to stderr.
	logFlush func() error

	listeners []net.Listener
	ctl       *controlServer
	// asUser runs mailbox deliveries with their recipient's privileges;
	// nil unless mailtee runs as root.
	asUser *asuser.Pool
}

// runtime is the part of a running server that follows main.cf and its
// tables, replaced whole by a reload.
type runtime struct {
	cfg     *config.Config
	router  *route.Router
	local   *local.Local
	cleanup *cleanup
	policy  *smtpd.Policy
}

// newRuntime opens the tables of cfg and builds routing, local delivery,
// rewriting and relay control on them.
func (s *server) newRuntime(cfg *config.Config, opened map[string]maps.Table) (*runtime, error) {
	t, err := openTables(cfg, opened)
	if err != nil {
		return nil, err
	}
	isLocal := func(domain string) bool {
		ok, _ := t.mydest.Match(context.Background(), domain)
		return ok
	}
	cl := newCleanup(cfg, t, func(line string) { s.log.Printf("cleanup", "%s", line) })
	lda, err := localFor(cfg, t, isLocal, s.lmtp, s.forward, cl.rewriteCopies, s.asUser)
	if err != nil {
		return nil, err
	}
	return &runtime{
		cfg:     cfg,
		router:  routerFor(cfg, t),
		local:   lda,
		cleanup: cl,
		policy:  policyFor(cfg, t),
	}, nil
}

func runServe(args []string, stdout, stderr io.Writer) int {
	cfg, ok := loadConfig("serve", flag.NewFlagSet("serve", flag.ContinueOnError), args, stderr)
	if !ok {
		return exitBadData
	}
	findings, opened := checkAll(cfg)
	for _, d := range findings {
		if d.Severity == diag.Error {
			fmt.Fprintf(stderr, "mailtee serve: %v\n", d)
		}
	}
	if findings.HasErrors() {
		fmt.Fprintf(stderr, "mailtee serve: %s has errors; not starting (mailtee check -c %s lists every finding)\n", cfg.File, cfg.Dir)
		return exitBadData
	}
	// Signals are ours from before the listeners open: a SIGHUP or
	// SIGTERM that arrives as soon as the port answers must not kill the
	// process with Go's default action.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	s, err := newServer(cfg, stderr, opened)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee serve: %v\n", err)
		return exitRuntime
	}
	for _, d := range findings {
		s.log.Printf("master", "warning: %s", strings.TrimPrefix(d.String(), "warning: "))
	}
	if err := s.start(); err != nil {
		fmt.Fprintf(stderr, "mailtee serve: %v\n", err)
		return exitRuntime
	}
	stopProfile := startProfile(stderr)
	defer stopProfile()
	stopGC := make(chan struct{})
	defer close(stopGC)
	go gcTuner(stopGC)
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			s.reloadCheck(cfg.Dir)
			continue
		}
		s.log.Printf("master", "terminating on signal %v", sig)
		break
	}
	s.stop(30 * time.Second)
	return exitOK
}

func newServer(cfg *config.Config, stderr io.Writer, opened map[string]maps.Table) (*server, error) {
	s := &server{cfg: cfg, host: cfg.Get("myhostname")}
	logw := stderr
	if f := cfg.Get("maillog_file"); f != "" {
		lf, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, fmt.Errorf("maillog_file: %w", err)
		}
		// The file gets lines in batches; stderr line by line, as an
		// administrator watching it expects.
		bl := maillog.NewBuffered(lf)
		s.logFlush = bl.Flush
		logw = bl
	}
	s.log = maillog.New(logw, s.host)
	resolver := &route.Resolver{Servers: cfg.List("dns_servers"), Timeout: 5 * time.Second}
	tlsLevel := cfg.Get("smtp_tls_security_level")
	if tlsLevel == "" {
		tlsLevel = "may"
	}
	s.smtp = &deliver.Client{
		HeloName:       firstNonEmpty(cfg.Get("smtp_helo_name"), s.host),
		TLSLevel:       tlsLevel,
		BindAddr:       cfg.Get("smtp_bind_address"),
		BindAddr6:      cfg.Get("smtp_bind_address6"),
		Port:           portName(cfg.Get("smtp_tcp_port"), "25"),
		ConnectTimeout: mustDuration(cfg, "smtp_connect_timeout"),
		// One timeout for every command reply: the shortest of Postfix's
		// greeting/HELO, MAIL and RCPT timeouts (300s each by default).
		CommandTimeout: min(mustDuration(cfg, "smtp_helo_timeout"), mustDuration(cfg, "smtp_mail_timeout"), mustDuration(cfg, "smtp_rcpt_timeout")),
		Resolver:       resolver,
		MaxIdle:        5 * time.Second,
		Log:            s.log.Slog().With("component", "smtp"),
	}
	s.lmtp = &deliver.Client{
		HeloName:       s.host,
		TLSLevel:       "none",
		Port:           portName(cfg.Get("lmtp_tcp_port"), "24"),
		ConnectTimeout: mustDuration(cfg, "smtp_connect_timeout"),
		CommandTimeout: 10 * time.Minute,
		Resolver:       resolver,
		LMTP:           true,
		Log:            s.log.Slog().With("component", "lmtp"),
	}
	if os.Geteuid() == 0 {
		s.asUser = asuser.NewPool(asuser.Options{Warn: func(msg string) { s.log.Printf("local", "warning: %s", msg) }})
	}
	rt, err := s.newRuntime(cfg, opened)
	if err != nil {
		return nil, err
	}
	s.rt.Store(rt)
	tuneGC()
	q, err := queue.Open(queue.Options{
		Dir:             queueDir(cfg),
		MinBackoff:      mustDuration(cfg, "minimal_backoff_time"),
		MaxBackoff:      mustDuration(cfg, "maximal_backoff_time"),
		MaxLifetime:     mustDuration(cfg, "maximal_queue_lifetime"),
		BounceLifetime:  mustDuration(cfg, "bounce_queue_lifetime"),
		DestConcurrency: mustInt(cfg, "default_destination_concurrency_limit"),
		MaxActiveRcpts:  mustInt(cfg, "qmgr_message_recipient_limit"),
		// smtp, relay and lmtp follow TRANSPORT_destination_concurrency_limit.
		// local does not: Postfix's local limit (2) is per recipient
		// (local_destination_recipient_limit = 1), mailtee's next hop
		// for local delivery is the whole domain, whose deliveries
		// Postfix runs up to its process limit (100) at once; mailtee
		// keeps default_destination_concurrency_limit there.
		Concurrency: func(transport string) int {
			if transport == "local" {
				return 0
			}
			n, err := strconv.Atoi(cfg.Get(transport + "_destination_concurrency_limit"))
			if err != nil {
				return 0
			}
			return n
		},
		Route: func(ctx context.Context, rcpt string) (queue.Hop, error) {
			h, err := s.rt.Load().router.Route(ctx, rcpt)
			return queue.Hop{Transport: h.Transport, Nexthop: h.Nexthop}, err
		},
		Deliver: s.deliver,
		Bounce:  s.bounce,
		Events:  events{s.log},
		Log:     s.log.Slog(),
	})
	if err != nil {
		return nil, err
	}
	s.q = q
	tlsCfg, err := serverTLS(cfg)
	if err != nil {
		return nil, err
	}
	banner, _ := cfg.Expand(cfg.Get("smtpd_banner"))
	s.smtpd = smtpd.New(smtpd.Options{
		Hostname:        s.host,
		Banner:          banner,
		MaxMessageBytes: int64(mustInt(cfg, "message_size_limit")),
		MaxRecipients:   mustInt(cfg, "smtpd_recipient_limit"),
		Timeout:         mustDuration(cfg, "smtpd_timeout"),
		HardErrorLimit:  mustInt(cfg, "smtpd_hard_error_limit"),
		SoftErrorLimit:  mustInt(cfg, "smtpd_soft_error_limit"),
		MaxClients:      mustInt(cfg, "default_process_limit"), // master.cf is not read
		TLS:             tlsCfg,
		SMTPUTF8:        cfg.Get("smtputf8_enable") == "yes",
		Policy:          rt.policy,
		Queue:           cleanupQueue{c: func() *cleanup { return s.rt.Load().cleanup }, newID: s.q.NewID, enqueue: s.q.Enqueue},
		MailLog:         func(line string) { s.log.Printf("smtpd", "%s", line) },

		JunkCommandLimit: mustInt(cfg, "smtpd_junk_command_limit"),
		ErrorSleepTime:   mustDuration(cfg, "smtpd_error_sleep_time"),
		Stress:           stressLimits(cfg.Stressed()),
		Client: smtpd.ClientLimits{
			ConnectionCount: mustInt(cfg, "smtpd_client_connection_count_limit"),
			ConnectionRate:  mustInt(cfg, "smtpd_client_connection_rate_limit"),
			MessageRate:     mustInt(cfg, "smtpd_client_message_rate_limit"),
			RecipientRate:   mustInt(cfg, "smtpd_client_recipient_rate_limit"),
			TimeUnit:        mustDuration(cfg, "anvil_rate_time_unit"),
		},
	})
	return s, nil
}

// queueDir is queue_directory, made absolute so that the control socket
// and sendmail agree whatever their working directory.
func queueDir(cfg *config.Config) string {
	d := cfg.Get("queue_directory")
	if abs, err := filepath.Abs(d); err == nil {
		return abs
	}
	return d
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// portName maps Postfix's service names to numbers ("smtp" is 25).
func portName(p, def string) string {
	switch p {
	case "", "smtp":
		return def
	case "lmtp":
		return "24"
	}
	return p
}

func (s *server) start() error {
	addrs, err := listenAddrs(s.cfg)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen on %s: %w", a, err)
		}
		s.listeners = append(s.listeners, l)
	}
	ctl, err := startControl(queueDir(s.cfg), s)
	if err != nil {
		s.closeListeners()
		return err
	}
	s.ctl = ctl
	go s.q.Run()
	go s.rescanLoop()
	for _, l := range s.listeners {
		go s.smtpd.Serve(l)
		s.log.Printf("master", "daemon started -- mailtee, listening on %s, queue %s", l.Addr(), queueDir(s.cfg))
	}
	return nil
}

// rescanLoop picks up submissions whose notification was lost, every
// queue_run_delay, as Postfix's pickup polls the maildrop.
func (s *server) rescanLoop() {
	d := mustDuration(s.cfg, "queue_run_delay")
	if d <= 0 {
		d = 5 * time.Minute
	}
	t := time.NewTicker(d)
	defer t.Stop()
	for range t.C {
		s.q.Rescan()
	}
}

func (s *server) closeListeners() {
	for _, l := range s.listeners {
		l.Close()
	}
}

// stop shuts down gracefully: no new connections, sessions finish their
// transaction, deliveries in flight finish (or are cut after grace and
// retried after restart).
func (s *server) stop(grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	s.smtpd.Shutdown(ctx)
	if s.ctl != nil {
		s.ctl.Close()
	}
	s.q.Close(ctx)
	s.smtp.Close()
	s.lmtp.Close()
	if s.asUser != nil {
		s.asUser.Close() // after the queue: no delivery uses it now
	}
	s.log.Printf("master", "terminated")
	if s.logFlush != nil {
		s.logFlush()
	}
}

// reloadCheck re-reads the configuration on SIGHUP. A configuration with
// errors is refused and the running one kept.
func (s *server) reloadCheck(dir string) error {
	cfg, err := config.Load(dir)
	var opened map[string]maps.Table
	if err == nil {
		var d diag.List
		if d, opened = checkAll(cfg); d.HasErrors() {
			err = d.Err()
		}
	}
	var rt *runtime
	if err == nil {
		rt, err = s.newRuntime(cfg, opened)
	}
	if err != nil {
		s.log.Printf("master", "warning: reload refused, keeping the running configuration: %v", err)
		return err
	}
	s.rt.Store(rt)
	tuneGC()
	s.smtpd.SetPolicy(rt.policy)
	s.log.Printf("master", "reload: tables, routing, rewriting, relay control and local delivery reloaded from %s; listeners, queue timers and TLS change at the next restart", cfg.File)
	return nil
}

// deliver dispatches a group of recipients to their transport.
func (s *server) deliver(ctx context.Context, m *queue.Message, hop queue.Hop, idx []int) []queue.Outcome {
	msg := &deliver.Message{ID: m.ID, From: m.Env.From, Size: m.Size, Open: m.Open,
		SMTPUTF8: m.Env.SMTPUTF8, EightBit: m.Env.BodyType == "8BITMIME"}
	rcpts := make([]string, len(idx))
	for k, i := range idx {
		rcpts[k] = m.Rcpts[i].Addr
	}
	out := make([]queue.Outcome, len(idx))
	switch hop.Transport {
	case "smtp", "relay", "lmtp":
		c := s.smtp
		if hop.Transport == "lmtp" {
			c = s.lmtp
		}
		for k, r := range c.Deliver(ctx, hop.Nexthop, msg, rcpts) {
			out[k] = queue.Outcome{Err: r.Err, Relay: r.Relay, Reply: r.Reply}
		}
	case "local":
		lr := make([]local.Rcpt, len(idx))
		for k, i := range idx {
			lr[k] = local.Rcpt{Addr: m.Rcpts[i].Addr, Copy: m.Rcpts[i].Copy}
		}
		for k, r := range s.rt.Load().local.Deliver(ctx, msg, lr) {
			out[k] = queue.Outcome{Err: r.Err, Relay: "local", Reply: r.Done, Add: r.Add}
		}
	case "error":
		for k := range rcpts {
			out[k] = queue.Outcome{Relay: "none", Err: &deliver.Error{Permanent: true, Enhanced: "5.0.0", Text: firstNonEmpty(hop.Nexthop, "mail for this destination is refused"), Relay: "none"}}
		}
	case "discard":
		for k := range rcpts {
			out[k] = queue.Outcome{Relay: "none", Reply: "discarded: " + firstNonEmpty(hop.Nexthop, "by transport")}
		}
	default:
		for k := range rcpts {
			out[k] = queue.Outcome{Relay: "none", Err: &deliver.Error{Enhanced: "4.3.5", Text: fmt.Sprintf("unknown mail transport %q (mailtee supports smtp, relay, lmtp, local, error, discard)", hop.Transport), Relay: "none"}}
		}
	}
	return out
}

// forward re-injects a message for remote targets of a local alias.
func (s *server) forward(ctx context.Context, from string, rcpts []envelope.Rcpt, msg *deliver.Message, deliveredTo string) error {
	body, err := msg.Open()
	if err != nil {
		return err
	}
	defer body.Close()
	env := &envelope.Envelope{From: from, ClientName: "localhost", Protocol: "local", Arrival: time.Now(), Rcpts: rcpts,
		Notification: msg.From == "" && from == "", Parent: msg.ID}
	var r io.Reader = body
	if deliveredTo != "" {
		r = io.MultiReader(strings.NewReader("Delivered-To: "+deliveredTo+"\r\n"), body)
	}
	id := s.q.NewID()
	out, body2, err := s.rt.Load().cleanup.process(ctx, id, env, r, false)
	if err != nil {
		return err
	}
	if err := s.q.Enqueue(ctx, id, out, body2); err != nil {
		return err
	}
	s.log.Printf("local", "%s: forwarded as %s", msg.ID, id)
	return nil
}

// rewriteCopies rewrites the addresses of mailbox_bcc_maps copies as
// those of mail mailtee makes itself: they were re-injected messages once.
func (c *cleanup) rewriteCopies(ctx context.Context, from string, rcpts []envelope.Rcpt) ([]envelope.Rcpt, error) {
	out, err := c.internal.Envelope(ctx, &envelope.Envelope{From: from, Rcpts: rcpts})
	if err != nil {
		return nil, err
	}
	return out.Rcpts, nil
}

// bounce queues the delivery status notifications for a finished message:
// failures of automatic copies go to bounce_notice_recipient and failures
// of mail from <> to 2bounce_notice_recipient (both postmaster@$myorigin
// by default); others to the sender (or an alias owner). A notification
// that itself fails is logged and dropped: never a bounce for a bounce.
func (s *server) bounce(ctx context.Context, m *queue.Message, failed []int, notified func([]int) error) error {
	if m.Env.Notification {
		for _, i := range failed {
			s.log.Printf("bounce", "%s: undeliverable notification to <%s> discarded: %s", m.ID, m.Rcpts[i].Addr, m.Rcpts[i].LastErr)
		}
		return nil
	}
	doubleBounce := false
	cfg := s.rt.Load().cfg
	for _, c := range cfg.List("notify_classes") {
		doubleBounce = doubleBounce || c == "2bounce"
	}
	type dest struct {
		to         string
		postmaster bool
	}
	groups := map[dest][]int{}
	var order []dest
	for _, i := range failed {
		r := m.Rcpts[i]
		d := dest{to: m.Env.From}
		switch {
		case r.Copy: // Postfix's bounce_notice_recipient takes notices
			d = dest{cfg.Get("bounce_notice_recipient"), true}
		case r.NotifyOwner != "":
			d.to = r.NotifyOwner
		case d.to == "": // mail from <>: a double bounce
			if !doubleBounce {
				// Postfix's default notify_classes has no 2bounce:
				// the failure is logged, nobody is told.
				s.log.Printf("bounce", "%s: undeliverable mail from <> to <%s> discarded: %s", m.ID, r.Addr, r.LastErr)
				continue
			}
			d = dest{cfg.Get("2bounce_notice_recipient"), true}
		}
		if _, ok := groups[d]; !ok {
			order = append(order, d)
		}
		groups[d] = append(groups[d], i)
	}
	for _, d := range order {
		if err := s.sendDSN(ctx, m, d.to, d.postmaster, groups[d]); err != nil {
			return err
		}
		if err := notified(groups[d]); err != nil {
			return err
		}
	}
	return nil
}

func (s *server) sendDSN(ctx context.Context, m *queue.Message, to string, postmaster bool, idx []int) error {
	cfg := s.rt.Load().cfg
	rcpt := to
	if !strings.Contains(rcpt, "@") {
		rcpt = to + "@" + cfg.Get("myorigin")
	}
	body, err := m.Open()
	if err != nil {
		return err
	}
	defer body.Close()
	rep := &dsn.Report{
		ReportingMTA: s.host,
		QueueID:      m.ID,
		From:         "MAILER-DAEMON@" + s.host,
		To:           rcpt,
		Sender:       m.Env.From,
		Arrival:      m.Env.Arrival,
		Postmaster:   postmaster,
		// Whole up to bounce_size_limit, else its headers only, as
		// Postfix's bounce_original does.
		Original:    body,
		MaxOriginal: int64(mustInt(cfg, "bounce_size_limit")),
	}
	for _, i := range idx {
		r := m.Rcpts[i]
		status := r.DSN
		if status == "" || status[0] != '5' {
			status = "5.4.7" // expired: delivery time expired
			if !r.Expired && r.DSN != "" {
				status = r.DSN
			}
		}
		diagText := r.LastErr
		if r.Expired {
			diagText = "delivery time expired; last error: " + r.LastErr
		}
		rep.Recipients = append(rep.Recipients, dsn.Recipient{
			Final: r.Addr, Original: r.Orig, Action: "failed", Status: status,
			RemoteMTA: remoteHost(r.Relay), Diagnostic: "X-Mailtee; " + diagText, LastAttempt: time.Now(),
		})
	}
	id := s.q.NewID()
	data, err := dsn.Build(rep, time.Now(), id+"@"+s.host)
	if err != nil {
		return err
	}
	env := &envelope.Envelope{From: "", Rcpts: []envelope.Rcpt{{Addr: rcpt}}, ClientName: "localhost", Protocol: "local", Arrival: time.Now(), Notification: true, Parent: m.ID}
	if err := s.q.Enqueue(ctx, id, env, bytes.NewReader(data)); err != nil {
		return err
	}
	if postmaster {
		s.log.PostmasterBounce(m.ID, id)
	} else {
		s.log.Bounce(m.ID, id)
	}
	return nil
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

// events turns queue events into mail log lines.
type events struct{ log *maillog.Logger }

func (e events) Queued(m *queue.Message) {
	e.log.Queued(m.ID, m.Env.From, m.Size, len(m.Rcpts))
}

func (e events) Delivery(m *queue.Message, i int, hop queue.Hop, o queue.Outcome, status string, delay time.Duration) {
	r := m.Rcpts[i]
	d := maillog.Delivery{ID: m.ID, To: r.Addr, OrigTo: r.Orig, Relay: o.Relay, Transport: hop.Transport,
		Delay: delay, DSN: firstNonEmpty(o.DSN, dsnCode(o.Err)), Status: status, Copy: r.Copy}
	if d.Transport == "none" || d.Transport == "" {
		d.Transport = "qmgr"
	}
	if o.Err != nil {
		d.Reason = o.Err.Error()
	} else {
		d.Reason = o.Reply
	}
	e.log.Delivery(d)
}

func (e events) Removed(m *queue.Message) { e.log.Removed(m.ID) }

func dsnCode(err error) string {
	if err == nil {
		return "2.0.0"
	}
	var de *deliver.Error
	if errors.As(err, &de) && de.Enhanced != "" {
		return de.Enhanced
	}
	if queue.IsPermanent(err) {
		return "5.0.0"
	}
	return "4.0.0"
}
