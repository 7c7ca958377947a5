// Package master is mailtee's master(8): it builds the running server
// from main.cf — the SMTP server, cleanup, the queue, the delivery
// agents, bounce — runs it, and reloads what a reload may change. It
// holds wiring only: each stage's policy is in its own package.
package master

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mailtee/mailtee/internal/asuser"
	"github.com/mailtee/mailtee/internal/bounce"
	"github.com/mailtee/mailtee/internal/cleanup"
	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/dnsresolve"
	"github.com/mailtee/mailtee/internal/drain"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/fleet"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/local"
	"github.com/mailtee/mailtee/internal/maildrop"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/mastercf"
	"github.com/mailtee/mailtee/internal/metrics"
	"github.com/mailtee/mailtee/internal/migration"
	"github.com/mailtee/mailtee/internal/pace"
	"github.com/mailtee/mailtee/internal/qmgr"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/queuelock"
	"github.com/mailtee/mailtee/internal/smtpd"
	"github.com/mailtee/mailtee/internal/srs"
)

// Server is a running mailtee: the SMTP server, the queue and the
// delivery agents, wired from one main.cf.
type Server struct {
	cfg *config.Config // as started: listeners, queue, timers, TLS
	// rt is what a reload replaces: tables and everything built on them.
	rt   atomic.Pointer[runtime]
	log  *maillog.Logger
	q    *queue.Queue
	door *cleanup.Door
	// forwarder re-injects local(8)'s forwards through door.
	forwarder *qmgr.Forwarder
	smtp      *deliver.Client
	lmtp      *deliver.Client
	// svcs are the SMTP listeners, each with its own smtpd server
	// (master.cf's smtpd services, or smtpd_port without master.cf).
	svcs []*smtpService
	mf   *mastercf.File // nil without master.cf
	// clients are the SMTP clients of master.cf's smtp services whose
	// -o overrides change the client (smtpClient).
	clients []*deliver.Client
	host    string
	// logFlush writes out buffered maillog_file lines, or those waiting
	// for syslog; nil when logging to stderr only.
	logFlush func() error

	listeners []net.Listener
	ctl       *controlServer
	pickup    *maildrop.Pickup
	// asUser runs mailbox deliveries with their recipient's privileges;
	// nil unless mailtee runs as root.
	asUser *asuser.Pool
	qlock  *queuelock.Lock // held from before the queue opens until it closes
	// pace paces deliveries; its state is saved in the queue directory
	// (pacingState) every pacingSaveEvery and at Stop.
	pace     *pace.Pacer
	paceStop chan struct{}
	// ledger records every message and outcome (nil: ledger_database
	// is empty).
	ledger *ledger.Recorder
	// fleet is this node's membership of the fleet sharing
	// ledger_database's PostgreSQL (internal/fleet); nil without one.
	fleet *fleet.Fleet
	// limits are the provider limits counted across the fleet (nil
	// without a fleet, or with fleet_shared_limits = no).
	limits *fleet.Limits
	// handoff takes what other nodes hand to this one and drains this
	// one on request (internal/drain, master/drain.go).
	handoff *drain.Node
	// drained is closed after handoff is done (Drained).
	drained     chan struct{}
	drainedOnce sync.Once
	// mig keeps the migration settings each message was accepted with
	// (internal/migration), in the queue directory.
	mig *migration.Store
	// metrics are /metrics' families (internal/metrics).
	metrics *metrics.Metrics
	// obs is the HTTP listener of metrics_listen (nil: none).
	obs *observer
}

// Log is the server's mail log.
func (s *Server) Log() *maillog.Logger { return s.log }

// agents are the delivery agents of s by transport name, besides
// qmgr's error and discard.
func (s *Server) agents() map[string]qmgr.Agent {
	base := map[string]qmgr.Agent{
		"smtp":  qmgr.SMTPAgent{Client: s.smtp},
		"relay": qmgr.SMTPAgent{Client: s.smtp},
		"lmtp":  qmgr.SMTPAgent{Client: s.lmtp},
		"local": qmgr.LocalAgent{Local: func() *local.Local { return s.rt.Load().local }},
	}
	if s.mf != nil {
		return s.masterAgents(s.mf, base) // master.cf's delivery services
	}
	if s.cfg != nil {
		if c := s.relayClient(); c != nil { // relay_bind_address
			base["relay"] = qmgr.SMTPAgent{Client: c}
		}
	}
	return base
}

// Transports are the transport names mailtee delivers with.
func Transports() []string { return qmgr.New((&Server{}).agents()).Transports() }

// New builds the server for cfg, which Check found without errors;
// opened are the tables Check opened. Log lines go to maillog_file when it
// is set, else to syslog as maillog.DefaultLog says (stderr without a
// syslog socket).
func New(cfg *config.Config, stderr io.Writer, opened map[string]maps.Table) (*Server, error) {
	s := &Server{cfg: cfg, host: cfg.Get("myhostname")}
	s.mf, _ = loadMaster(cfg) // Check reported its findings
	var d diag.List
	if s.svcs, d = smtpServices(cfg, s.mf, true); d.HasErrors() {
		return nil, d.Err()
	}
	logw, logWarning := io.Writer(nil), ""
	if f := cfg.Get("maillog_file"); f == "" {
		logw, s.logFlush, logWarning = maillog.DefaultLog(stderr, maillog.SyslogOptions{Facility: cfg.Get("syslog_facility")})
	} else {
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
	// Postfix's syslog_name default is "postfix"; unset, the name is
	// maillog's own ("mailtee").
	var program string
	if _, set := cfg.Set("syslog_name"); set {
		program = cfg.Get("syslog_name")
	}
	s.log = maillog.NewWithHandler(maillog.NewHandler(logw, &maillog.Options{Host: s.host, Program: program}))
	if logWarning != "" {
		s.log.Warnf("master", "%s", logWarning)
	}
	resolver := &dnsresolve.Resolver{Servers: cfg.List("dns_servers"), Timeout: 5 * time.Second}
	s.smtp = s.smtpClient(cfg, resolver, "smtp")
	s.lmtp = s.lmtpClient(cfg, resolver, "lmtp")
	if os.Geteuid() == 0 {
		s.asUser = asuser.NewPool(asuser.Options{Warn: func(msg string) { s.log.Printf("local", "warning: %s", msg) }})
	}
	// The stages that queue messages (bounce, local's forwards) do so
	// through cleanup's door, which needs the queue, which needs them:
	// they get the door once it exists, before anything runs.
	notifier := &bounce.Notifier{Policy: s.bouncePolicy, Log: s.log}
	s.forwarder = &qmgr.Forwarder{Log: s.log}
	s.mig = migration.NewStore(migration.Dir(QueueDir(cfg)), func(format string, args ...any) { s.log.Printf("master", format, args...) })
	rt, err := s.newRuntime(cfg, opened)
	if err != nil {
		return nil, err
	}
	s.rt.Store(rt)
	tuneGC()
	agents := s.agents()
	agents[srs.Transport] = s.srsAgent()
	manager := qmgr.New(agents)
	manager.Sender = s.srsSender
	if s.fleet, err = s.openFleet(cfg); err != nil {
		return nil, err
	}
	s.pace = s.pacer(cfg, resolver)
	// The queue is ours alone from before it is opened: an offline
	// postsuper edit finishes first, a second serve fails (queuelock).
	if s.qlock, err = queuelock.Acquire(QueueDir(cfg), 30*time.Second); err != nil {
		s.closeFleet()
		return nil, fmt.Errorf("%w (is another mailtee serve running on it?)", err)
	}
	var qledger queue.Ledger
	if s.ledger = s.newLedger(cfg); s.ledger != nil {
		qledger = s.ledger
	}
	s.metrics = s.newMetrics(cfg)
	q, err := queue.Open(queue.Options{
		Dir:             QueueDir(cfg),
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
		Route: func(ctx context.Context, rcpt string) (envelope.Hop, error) {
			rt := s.rt.Load()
			if hop, ok := srs.Route(rt.srs, rcpt); ok {
				return hop, nil // a bounce to a copy's SRS sender
			}
			return rt.router.Route(ctx, rcpt)
		},
		// copy_transport, and no copy delivered here (route.CopyRoute).
		CopyRoute: func(ctx context.Context, r envelope.Rcpt) (envelope.Hop, bool, error) {
			return s.rt.Load().router.CopyRoute(ctx, r)
		},
		CopyApart: func(addr string) bool { return s.rt.Load().copyApart(addr) },
		Deliver:   manager.Deliver,
		Pacer:     s.pace,
		Ledger:    qledger,
		Bounce:    notifier.Bounce,
		Events:    s.metrics.Events(qmgr.Events{Log: s.log}),
		Log:       s.log.Slog(),
	})
	if err != nil {
		s.closeLedger()
		s.closeFleet()
		s.qlock.Release()
		return nil, err
	}
	s.q = q
	// The settings of new mail are on disk before any is accepted; those
	// no queued message was accepted with are removed.
	if err := s.mig.SetCurrent(rt.mig); err != nil {
		q.Close(context.Background())
		s.closeLedger()
		s.closeFleet()
		s.qlock.Release()
		return nil, err
	}
	inUse := map[string]bool{}
	q.Each(func(in queue.Info) error { inUse[in.Settings] = true; return nil })
	if gone := s.mig.Prune(inUse); len(gone) > 0 {
		s.log.Printf("master", "migration settings no queued message uses removed: %s", strings.Join(gone, ", "))
	}
	s.loadPacing() // before the first delivery
	s.door = cleanup.NewDoor(q, rt.cleanup)
	notifier.Queue, s.forwarder.Queue = s.door, s.door
	// From here a failure must give back the queue and its lock: a
	// process that goes on (a test, a caller retrying) would otherwise
	// find the queue locked by nobody it can see.
	fail := func(err error) (*Server, error) {
		q.Close(context.Background())
		s.closeLedger()
		s.closeFleet()
		s.qlock.Release()
		return nil, err
	}
	policies, err := servicePolicies(rt, s.svcs, opened)
	if err != nil {
		return fail(err)
	}
	for i, svc := range s.svcs {
		if svc.srv, err = s.newSMTPD(svc, policies[i]); err != nil {
			return fail(err)
		}
	}
	if s.obs, err = s.newObserver(cfg, s.metrics.Handler()); err != nil {
		return fail(err)
	}
	return s, nil
}

// newSMTPD builds the SMTP server of one listener from its
// configuration: main.cf with the service's -o overrides.
func (s *Server) newSMTPD(svc *smtpService, policy *smtpd.Policy) (*smtpd.Server, error) {
	cfg := svc.cfg
	tlsCfg, err := serverTLS(cfg, s.log)
	if err != nil {
		return nil, err
	}
	if svc.wrapper {
		// smtpd_tls_wrappermode: the listener speaks TLS from the
		// first byte (Start wraps it), so no STARTTLS is offered
		// and none is required.
		svc.tls, tlsCfg = tlsCfg, nil
	}
	banner, _ := cfg.Expand(cfg.Get("smtpd_banner"))
	return smtpd.New(smtpd.Options{
		Hostname:        cfg.Get("myhostname"), // the listener's: -o myhostname applies
		Banner:          banner,
		MailName:        cfg.Get("mail_name"),
		MaxMessageBytes: int64(mustInt(cfg, "message_size_limit")),
		MaxRecipients:   mustInt(cfg, "smtpd_recipient_limit"),
		Timeout:         mustDuration(cfg, "smtpd_timeout"),
		HardErrorLimit:  mustInt(cfg, "smtpd_hard_error_limit"),
		SoftErrorLimit:  mustInt(cfg, "smtpd_soft_error_limit"),
		MaxClients:      svc.maxProc, // master.cf's maxproc
		TLS:             tlsCfg,
		StartTLSTimeout: mustDuration(cfg, "smtpd_starttls_timeout"),
		RequireTLS:      cfg.Get("smtpd_tls_security_level") == "encrypt" && !svc.wrapper,
		SMTPUTF8:        cfg.Get("smtputf8_enable") == "yes",
		BareNewline:     bareNewline(cfg),
		BareNewlineCode: mustInt(cfg, "smtpd_forbid_bare_newline_reject_code"),
		Policy:          policy,
		Queue:           s.door,
		MailLog:         func(line string) { s.log.Printf("smtpd", "%s", line) },
		Observer:        s.metrics.SMTPD(),

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
	}), nil
}

// bouncePolicy is what the configuration in force says about
// notifications.
func (s *Server) bouncePolicy() bounce.Policy {
	cfg := s.rt.Load().cfg
	p := bounce.Policy{
		Hostname:              s.host,
		MailName:              cfg.Get("mail_name"),
		Myorigin:              cfg.Get("myorigin"),
		NoticeRecipient:       cfg.Get("bounce_notice_recipient"),
		DoubleBounceRecipient: cfg.Get("2bounce_notice_recipient"),
		MaxOriginal:           int64(mustInt(cfg, "bounce_size_limit")),
	}
	for _, c := range cfg.List("notify_classes") {
		p.DoubleBounce = p.DoubleBounce || c == "2bounce"
	}
	return p
}

// QueueDir is mailtee's queue (queue_directory, never Postfix's: see
// config.QueueDirectory), made absolute so that the control socket and
// sendmail agree whatever their working directory.
func QueueDir(cfg *config.Config) string {
	d := cfg.QueueDirectory()
	if abs, err := filepath.Abs(d); err == nil {
		return abs
	}
	return d
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

// Start opens the listeners and the control socket and starts the
// queue and the SMTP server.
func (s *Server) Start() error {
	for _, svc := range s.svcs {
		for _, a := range svc.addrs {
			l, err := net.Listen("tcp", a)
			if err != nil {
				s.closeListeners()
				return listenError(a, svc.portSource(), err)
			}
			if svc.tls != nil {
				l = tls.NewListener(l, svc.tls)
			}
			s.listeners = append(s.listeners, l)
			svc.listeners = append(svc.listeners, l)
		}
	}
	if s.obs != nil {
		if err := s.obs.web.Start(); err != nil {
			s.closeListeners()
			return err
		}
		s.log.Printf("master", "metrics_listen: serving /metrics, the dashboard and the ledger for peers on %s", s.obs.web.URL())
	}
	ctl, err := startControl(QueueDir(s.cfg), s)
	if err != nil {
		s.closeListeners()
		s.obs.close(context.Background())
		return err
	}
	s.ctl = ctl
	if s.pickup, err = s.startPickup(); err != nil {
		s.ctl.Close()
		s.closeListeners()
		s.obs.close(context.Background())
		return fmt.Errorf("maildrop: %w", err)
	}
	s.handoff = s.startHandoff() // before the queue delivers: it parks what a hand-off left
	go s.q.Run()
	go s.rescanLoop()
	s.paceStop = make(chan struct{})
	go s.savePacing(s.paceStop)
	for _, svc := range s.svcs {
		for _, l := range svc.listeners {
			go svc.srv.Serve(l)
			from := ""
			if svc.line > 0 {
				from = fmt.Sprintf(" (master.cf service %s, line %d)", svc.name, svc.line)
			}
			s.log.Printf("master", "daemon started -- mailtee, listening on %s, queue %s%s", l.Addr(), QueueDir(s.cfg), from)
		}
	}
	return nil
}

// rescanLoop picks up submissions whose notification was lost, every
// queue_run_delay, as Postfix's pickup polls the maildrop.
func (s *Server) rescanLoop() {
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

func (s *Server) closeListeners() {
	for _, l := range s.listeners {
		l.Close()
	}
}

// shutdownSMTP closes the SMTP listeners; sessions in progress finish
// their transaction until ctx ends.
func (s *Server) shutdownSMTP(ctx context.Context) {
	var wg sync.WaitGroup
	for _, svc := range s.svcs {
		wg.Add(1)
		go func() { defer wg.Done(); svc.srv.Shutdown(ctx) }()
	}
	wg.Wait()
}

// Stop shuts down gracefully: no new connections, sessions finish their
// transaction, deliveries in flight finish (or are cut after grace and
// retried after restart).
func (s *Server) Stop(grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	s.shutdownSMTP(ctx)
	s.obs.close(ctx)
	if s.ctl != nil {
		s.ctl.Close()
	}
	if s.pickup != nil {
		s.pickup.Close() // before the queue it submits to
	}
	if s.handoff != nil {
		s.handoff.Close() // before the queue it imports into
	}
	s.q.Close(ctx)
	s.closeLedger() // after the queue: its last outcomes are written
	s.closeFleet()
	if s.paceStop != nil {
		close(s.paceStop)
	}
	s.savePacingNow() // after the last delivery, before the queue is another's
	s.qlock.Release()
	s.smtp.Close()
	for _, c := range s.clients {
		c.Close()
	}
	s.lmtp.Close()
	if s.asUser != nil {
		s.asUser.Close() // after the queue: no delivery uses it now
	}
	s.log.Printf("master", "terminated")
	if s.logFlush != nil {
		s.logFlush()
	}
}

// Reload re-reads the configuration on SIGHUP. A configuration with
// errors is refused and the running one kept.
func (s *Server) Reload(dir string) error {
	cfg, err := config.Load(dir)
	var opened map[string]maps.Table
	if err == nil {
		var d diag.List
		if d, opened = Check(cfg); d.HasErrors() {
			err = d.Err()
		}
	}
	var rt *runtime
	if err == nil {
		rt, err = s.newRuntime(cfg, opened)
	}
	if err != nil {
		// One log line per finding: a single line would carry the
		// newlines as '?' and bury all but the first.
		for _, l := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
			s.log.Printf("master", "warning: reload refused, keeping the running configuration: %s", l)
		}
		return err
	}
	if err := s.mig.SetCurrent(rt.mig); err != nil {
		s.log.Printf("master", "warning: reload refused, keeping the running configuration: %v", err)
		return err
	}
	if old := s.rt.Load(); old.mig.ID != rt.mig.ID {
		s.log.Printf("master", "reload: migration settings now %s (mail accepted before keeps %s)", rt.mig.Settings.Summary(), old.mig.ID)
	}
	s.rt.Store(rt)
	s.door.Set(rt.cleanup)
	tuneGC()
	s.reloadPolicies(cfg, rt, opened)
	s.obs.reload(cfg)
	s.log.Printf("master", "reload: tables, routing, rewriting, relay control and local delivery reloaded from %s; listeners, queue timers and TLS change at the next restart", cfg.File)
	return nil
}

// bareNewline is smtpd_forbid_bare_newline, which check has validated.
func bareNewline(cfg *config.Config) smtpd.BareNewline {
	m, _ := smtpd.ParseBareNewline(cfg.Get("smtpd_forbid_bare_newline"))
	return m
}

// autoUTF8 is smtputf8_autodetect_classes, when smtputf8_enable is on
// (Postfix's cleanup detects nothing otherwise).
func autoUTF8(cfg *config.Config) cleanup.AutoUTF8 {
	if cfg.Get("smtputf8_enable") != "yes" {
		return cleanup.AutoUTF8{}
	}
	return cleanup.ParseAutoUTF8(cfg.List("smtputf8_autodetect_classes"))
}
