package metrics

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/qmgr"
	"github.com/mailtee/mailtee/internal/queue"
)

func TestSMTPDFamilies(t *testing.T) {
	m := New(Options{})
	s := m.SMTPD()
	s.Connect()
	s.Connect()
	s.Disconnect()
	s.Lost("DATA")
	s.Lost("STARTTLS")
	s.Lost("DATA")
	s.Reject(550)
	s.Reject(554)
	s.Reject(550)
	s.Accepted()
	s.TLS(tls.ConnectionState{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256})
	s.TLS(tls.ConnectionState{Version: tls.VersionTLS12, CipherSuite: tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384})

	ss := scrapeOf(t, m)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"postfix_smtpd_connects_total", nil, 2},
		{"postfix_smtpd_disconnects_total", nil, 1},
		{"postfix_smtpd_connections_lost_total", []string{"after_stage=DATA"}, 2},
		{"postfix_smtpd_connections_lost_total", []string{"after_stage=STARTTLS"}, 1},
		{"postfix_smtpd_messages_rejected_total", []string{"code=550"}, 2},
		{"postfix_smtpd_messages_rejected_total", []string{"code=554"}, 1},
		{"postfix_smtpd_messages_processed_total", []string{"sasl_method=NONE"}, 1},
		{"postfix_smtpd_tls_connections_total", []string{"trust=Anonymous", "protocol=TLSv1.3",
			"cipher=TLS_AES_128_GCM_SHA256", "secret_bits=128", "algorithm_bits=128"}, 1},
		{"postfix_smtpd_tls_connections_total", []string{"protocol=TLSv1.2",
			"cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "secret_bits=256"}, 1},
		{"postfix_smtpd_sasl_authentication_failures_total", nil, 0},
		{"postfix_smtpd_forward_confirmed_reverse_dns_errors_total", nil, 0},
	} {
		if got := ss.get(t, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %g, want %g", c.name, c.labels, got, c.want)
		}
	}
}

// recorder is a queue.Events that remembers the calls, to check that
// the wrapper passes every event on.
type recorder struct{ queued, delivered, removed int }

func (r *recorder) Queued(*queue.Message) { r.queued++ }
func (r *recorder) Delivery(*queue.Message, int, envelope.Hop, queue.Outcome, string, time.Duration) {
	r.delivered++
}
func (r *recorder) Removed(*queue.Message) { r.removed++ }

func testMessage(id string, arrival time.Time, size int, rcpts ...envelope.Rcpt) *queue.Message {
	env := &envelope.Envelope{From: "a@example.org", Arrival: arrival, Rcpts: rcpts}
	return queue.NewMemMessage(id, env, make([]byte, size))
}

func TestEventFamilies(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	m := New(Options{Now: func() time.Time { return now }})
	next := &recorder{}
	ev := m.Events(next)

	msg := testMessage("A1", now.Add(-90*time.Second), 1500,
		envelope.Rcpt{Addr: "alice@example.com"},
		envelope.Rcpt{Addr: "alice@relay.example.net", Copy: true},
		envelope.Rcpt{Addr: "bob@relay.example.net", Copy: true},
		envelope.Rcpt{Addr: "carol@remote.example"})
	ev.Queued(msg)
	delays := [4]time.Duration{time.Second, 2 * time.Millisecond, 30 * time.Millisecond, 120 * time.Millisecond}
	smtp := envelope.Hop{Transport: "smtp", Nexthop: "remote.example"}
	relay := envelope.Hop{Transport: "relay", Nexthop: "[127.0.0.1]:2526"}
	ev.Delivery(msg, 0, envelope.Hop{Transport: "local"}, queue.Outcome{Relay: "local", Delays: delays}, "sent", 0)
	ev.Delivery(msg, 1, relay, queue.Outcome{Relay: "x[127.0.0.1]:2526", Delays: delays}, "sent", 0)
	ev.Delivery(msg, 2, relay, queue.Outcome{Err: &deliver.Error{Enhanced: "4.4.1",
		Text: "connect to x[127.0.0.1]:2526: Connection timed out"}, Relay: "none", Delays: delays}, "deferred", 0)
	ev.Delivery(msg, 3, smtp, queue.Outcome{Err: &deliver.Error{Permanent: true, Enhanced: "5.1.1", Text: "550 5.1.1 no"},
		Delays: delays}, "bounced", 0)
	ev.Delivery(msg, 3, envelope.Hop{Transport: "lmtp"}, queue.Outcome{Delays: delays}, "sent", 0)

	ss := scrapeOf(t, m)
	check := func(name string, want float64, labels ...string) {
		t.Helper()
		if got := ss.get(t, name, labels...); got != want {
			t.Errorf("%s%v = %g, want %g", name, labels, got, want)
		}
	}
	check("postfix_cleanup_messages_processed_total", 1)
	check("postfix_cleanup_messages_rejected_total", 0)
	check("postfix_qmgr_messages_inserted_recipients_count", 1)
	check("postfix_qmgr_messages_inserted_recipients_sum", 4)
	check("postfix_qmgr_messages_inserted_recipients_bucket", 0, "le=2")
	check("postfix_qmgr_messages_inserted_recipients_bucket", 1, "le=4")
	check("postfix_qmgr_messages_inserted_receipients_sum", 4)
	check("postfix_qmgr_messages_inserted_size_bytes_sum", 1500)
	check("postfix_qmgr_messages_inserted_size_bytes_bucket", 1, "le=10000")
	check("postfix_qmgr_messages_inserted_size_bytes_bucket", 0, "le=1000")

	// relay is an smtp(8) transport: it counts as smtp, with smtp.
	check("postfix_smtp_messages_processed_total", 1, "status=sent")
	check("postfix_smtp_messages_processed_total", 1, "status=deferred")
	check("postfix_smtp_messages_processed_total", 1, "status=bounced")
	check("postfix_smtp_status_deferred", 1)
	check("postfix_smtp_deferred_messages_total", 1)
	check("postfix_smtp_deferred_messages_by_dsn_total", 1, "dsn=4.4.1")
	check("postfix_smtp_bounced_messages_by_dsn_total", 1, "dsn=5.1.1")
	check("postfix_smtp_connection_timed_out_total", 1)
	// The delays of the sent and the bounced, not the deferred.
	for _, st := range stages {
		check("postfix_smtp_delivery_delay_seconds_count", 2, "stage="+st)
		check("postfix_lmtp_delivery_delay_seconds_count", 1, "stage="+st)
		check("mailtee_delivery_delay_seconds_count", 1, "transport=local", "stage="+st)
		check("mailtee_delivery_delay_seconds_count", 1, "transport=relay", "stage="+st)
	}
	check("postfix_smtp_delivery_delay_seconds_sum", 2, "stage=before_queue_manager")
	check("postfix_smtp_delivery_delay_seconds_bucket", 0, "stage=transmission", "le=0.1")
	check("postfix_smtp_delivery_delay_seconds_bucket", 2, "stage=transmission", "le=1")
	check("postfix_lmtp_messages_processed_total", 1, "status=sent")
	if ss.has("postfix_pipe_delivery_delay_seconds_count") {
		t.Error("pipe delays without a pipe transport")
	}

	check("mailtee_deliveries_total", 1, "transport=relay", "status=sent", "copy=yes")
	check("mailtee_deliveries_total", 1, "transport=relay", "status=deferred", "copy=yes")
	check("mailtee_deliveries_total", 1, "transport=smtp", "status=bounced", "copy=no")
	check("mailtee_deliveries_total", 1, "transport=local", "status=sent", "copy=no")

	// bob's copy is deferred: one pending for relay.example.net, as old
	// as the message.
	check("mailtee_copies_pending", 1, "destination=relay.example.net")
	check("mailtee_copy_oldest_pending_seconds", 90, "destination=relay.example.net")

	// A mailbox_bcc_maps copy added by a delivery is pending too.
	ev.Delivery(msg, 0, envelope.Hop{Transport: "local"}, queue.Outcome{Relay: "local",
		Add: []envelope.Rcpt{{Addr: "Alice@Provider.example", Copy: true}}}, "sent", 0)
	ss = scrapeOf(t, m)
	check("mailtee_copies_pending", 1, "destination=provider.example")

	msg.Rcpts[2].Expired = true
	ev.Removed(msg)
	ss = scrapeOf(t, m)
	check("postfix_qmgr_messages_removed_total", 1)
	check("postfix_qmgr_messages_expired_total", 1)
	if ss.has("mailtee_copies_pending") {
		t.Errorf("copies pending after the message left the queue:\n%s", ss.named("mailtee_copies"))
	}
	if next.queued != 1 || next.delivered != 6 || next.removed != 1 {
		t.Errorf("next got %+v, want every event", next)
	}
}

// A deferred copy becomes not pending once it is sent.
func TestCopyPendingUntilSent(t *testing.T) {
	now := time.Now()
	m := New(Options{Now: func() time.Time { return now }})
	ev := m.Events(nil)
	msg := testMessage("B1", now.Add(-time.Hour), 10, envelope.Rcpt{Addr: "u@new.example", Copy: true})
	ev.Queued(msg)
	if got := scrapeOf(t, m).get(t, "mailtee_copies_pending", "destination=new.example"); got != 1 {
		t.Fatalf("pending = %g, want 1", got)
	}
	ev.Delivery(msg, 0, envelope.Hop{Transport: "smtp"}, queue.Outcome{Err: errors.New("451 try later")}, "deferred", 0)
	ss := scrapeOf(t, m)
	if got := ss.get(t, "mailtee_copy_oldest_pending_seconds", "destination=new.example"); got != 3600 {
		t.Errorf("oldest = %g, want 3600", got)
	}
	ev.Delivery(msg, 0, envelope.Hop{Transport: "smtp"}, queue.Outcome{}, "sent", 0)
	if ss := scrapeOf(t, m); ss.has("mailtee_copies_pending") {
		t.Errorf("a sent copy is still pending:\n%s", ss.named("mailtee_copies"))
	}
}

func TestShowqFamilies(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	msgs := []queue.Shape{
		{Hold: true, Deferred: true, Size: 500, Arrival: now.Add(-5 * time.Second)},
		{Active: true, Deferred: true, Size: 5000, Arrival: now.Add(-50 * time.Second)},
		{Deferred: true, Size: 50000, Arrival: now.Add(-500 * time.Second)},
		{Deferred: true, Size: 2e6, Arrival: now.Add(-2 * 24 * time.Hour)},
		{Size: 10, Arrival: now},
	}
	m := New(Options{QueuePath: "/var/spool/mailtee", Now: func() time.Time { return now },
		Queue: func(buf []queue.Shape) []queue.Shape { return append(buf, msgs...) }})
	ss := scrapeOf(t, m)
	check := func(name string, want float64, labels ...string) {
		t.Helper()
		if got := ss.get(t, name, labels...); got != want {
			t.Errorf("%s%v = %g, want %g", name, labels, got, want)
		}
	}
	check("postfix_up", 1, "path=/var/spool/mailtee")
	check("postfix_showq_queue_depth", 1, "queue=hold")
	check("postfix_showq_queue_depth", 1, "queue=active")
	check("postfix_showq_queue_depth", 2, "queue=deferred")
	check("postfix_showq_queue_depth", 1, "queue=incoming")
	check("postfix_showq_queue_depth", 0, "queue=maildrop")
	check("postfix_showq_message_size_bytes_count", 2, "queue=deferred")
	check("postfix_showq_message_size_bytes_sum", 2050000, "queue=deferred")
	check("postfix_showq_message_size_bytes_bucket", 1, "queue=deferred", "le=100000")
	check("postfix_showq_message_size_bytes_bucket", 2, "queue=deferred", "le=1e+07")
	check("postfix_showq_message_age_seconds_bucket", 0, "queue=deferred", "le=100")
	check("postfix_showq_message_age_seconds_bucket", 1, "queue=deferred", "le=1000")
	check("postfix_showq_message_age_seconds_bucket", 2, "queue=deferred", "le=+Inf")
	check("postfix_showq_message_age_seconds_sum", 500+2*86400, "queue=deferred")
	check("postfix_showq_message_age_seconds_count", 0, "queue=maildrop")

	// A second scrape reads the queue afresh.
	msgs = msgs[:1]
	ss = scrapeOf(t, m)
	check("postfix_showq_queue_depth", 0, "queue=deferred")
	check("postfix_showq_message_size_bytes_count", 0, "queue=deferred")
	check("postfix_showq_queue_depth", 1, "queue=hold")
}

func TestLedgerAndReconciliation(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	calls := 0
	var rerr error
	m := New(Options{Now: func() time.Time { return now },
		Ledger: func() ledger.Stats {
			return ledger.Stats{Waiting: 7, Oldest: now.Add(-12 * time.Second), LastCommit: now.Add(-time.Second), Failures: 2, Lost: 3, Held: 4}
		},
		Reconcile: func(context.Context) (Reconciliation, error) {
			calls++
			return Reconciliation{Required: 40, Delivered: 38, Pending: 1, Failed: 1, Incomplete: true}, rerr
		},
		ReconcileEvery: time.Minute,
	})
	ss := scrapeOf(t, m)
	for _, c := range []struct {
		name string
		want float64
	}{
		{"mailtee_ledger_waiting", 7}, {"mailtee_ledger_lag_seconds", 12}, {"mailtee_ledger_failures_total", 2},
		{"mailtee_ledger_lost_total", 3}, {"mailtee_ledger_held_messages", 4}, {"mailtee_ledger_last_commit_timestamp_seconds", float64(now.Unix() - 1)},
		{"mailtee_reconciliation_required", 40}, {"mailtee_reconciliation_delivered", 38},
		{"mailtee_reconciliation_pending", 1}, {"mailtee_reconciliation_failed", 1},
		{"mailtee_reconciliation_missing", 2}, {"mailtee_reconciliation_ratio", 0.95},
		{"mailtee_reconciliation_complete", 0},
	} {
		if got := ss.get(t, c.name); got != c.want {
			t.Errorf("%s = %g, want %g", c.name, got, c.want)
		}
	}
	scrapeOf(t, m)
	if calls != 1 {
		t.Errorf("Reconcile called %d times in one ReconcileEvery, want 1", calls)
	}
	now = now.Add(2 * time.Minute)
	rerr = errors.New("ledger unreadable")
	ss = scrapeOf(t, m)
	if calls != 2 {
		t.Errorf("Reconcile called %d times after ReconcileEvery, want 2", calls)
	}
	if ss.has("mailtee_reconciliation_ratio") {
		t.Error("a ratio exported from a failed reconciliation")
	}
	if got := ss.get(t, "mailtee_metrics_source_up", "source=reconciliation"); got != 0 {
		t.Errorf("source_up = %g, want 0", got)
	}
}

func TestFsyncHistogram(t *testing.T) {
	m := New(Options{})
	m.ObserveFsync(300 * time.Microsecond)
	m.ObserveFsync(20 * time.Millisecond)
	ss := scrapeOf(t, m)
	if got := ss.get(t, "mailtee_journal_fsync_seconds_count"); got != 2 {
		t.Errorf("count = %g, want 2", got)
	}
	if got := ss.get(t, "mailtee_journal_fsync_seconds_bucket", "le=0.0005"); got != 1 {
		t.Errorf("le=0.0005: %g, want 1", got)
	}
}

func TestAgentOf(t *testing.T) {
	agent := AgentOf(map[string]qmgr.Agent{
		"copy":  qmgr.SMTPAgent{Client: &deliver.Client{}},
		"dove":  qmgr.SMTPAgent{Client: &deliver.Client{LMTP: true}},
		"local": qmgr.LocalAgent{},
		"error": qmgr.ErrorAgent{},
	})
	for transport, want := range map[string]string{"copy": "smtp", "dove": "lmtp", "local": "local", "error": "",
		"relay": "smtp", "discard": "", "none": ""} {
		if got := agent(transport); got != want {
			t.Errorf("%s: %q, want %q", transport, got, want)
		}
	}
}

// The queue reports a message as queued each time it becomes active
// (qmgr's insert line, at each retry); cleanup saw it once.
func TestQueuedAgainAtRetry(t *testing.T) {
	m := New(Options{})
	ev := m.Events(nil)
	msg := testMessage("R1", time.Now(), 100, envelope.Rcpt{Addr: "u@example.com"})
	ev.Queued(msg)
	msg.Rcpts[0].Attempts = 1 // deferred once
	ev.Queued(msg)
	ss := scrapeOf(t, m)
	if got := ss.get(t, "postfix_cleanup_messages_processed_total"); got != 1 {
		t.Errorf("cleanup processed %g, want 1", got)
	}
	if got := ss.get(t, "postfix_qmgr_messages_inserted_size_bytes_count"); got != 2 {
		t.Errorf("qmgr inserts %g, want 2", got)
	}
}

// A remote server writes the enhanced code of its reply: the dsn label
// must not take a new value for each one (a counter series lives until
// restart).
func TestDSNLabelBounded(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	m := New(Options{Now: func() time.Time { return now }})
	ev := m.Events(nil)
	smtp := envelope.Hop{Transport: "smtp", Nexthop: "hostile.example"}
	const n = 5000
	for i := 0; i < n; i++ {
		msg := testMessage(fmt.Sprintf("D%d", i), now, 100, envelope.Rcpt{Addr: "x@hostile.example"})
		ev.Delivery(msg, 0, smtp, queue.Outcome{Err: &deliver.Error{Enhanced: fmt.Sprintf("4.%d.%d", i, i*7)}}, "deferred", 0)
		ev.Delivery(msg, 0, smtp, queue.Outcome{Err: &deliver.Error{Permanent: true, Enhanced: fmt.Sprintf("5.1.%d", 1000+i)}}, "bounced", 0)
	}
	ss := scrapeOf(t, m)
	series := map[string]int{}
	var total float64
	for _, s := range ss {
		if s.name == "postfix_smtp_deferred_messages_by_dsn_total" || s.name == "postfix_smtp_bounced_messages_by_dsn_total" {
			series[s.name]++
			total += s.value
		}
	}
	for name, k := range series {
		if k > maxDSNLabels+1 {
			t.Errorf("%s: %d series, want at most %d", name, k, maxDSNLabels+1)
		}
	}
	if total != 2*n {
		t.Errorf("counted %g outcomes, want %d: none may be lost", total, 2*n)
	}
	if got := ss.get(t, "postfix_smtp_bounced_messages_by_dsn_total", "dsn=other"); got != n {
		t.Errorf("bounced dsn=other = %g, want %d (5.1.1000 is not RFC 3463's form)", got, n)
	}
}
