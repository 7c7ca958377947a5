package master

import (
	"io"
	"net/http"
	"net/smtp"
	"strings"
	"testing"
	"time"
)

// /metrics is wired: a message through a real server shows in smtpd's,
// qmgr's and the delivery agents' families, in the copies' and the
// ledger's, and in the reconciliation.
func TestMetricsWired(t *testing.T) {
	dir := t.TempDir()
	port, web := freePort(t), freePort(t)
	cfg := writeMainCF(t, dir, port, "copy@provider.example", "metrics_listen = 127.0.0.1:"+web)
	serve(t, cfg)
	if err := smtp.SendMail("127.0.0.1:"+port, nil, "a@client.example", []string{"b@remote.example"},
		[]byte("Subject: metrics\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`postfix_smtpd_connects_total 1`,
		`postfix_smtpd_messages_processed_total{sasl_method="NONE"} 1`,
		`postfix_cleanup_messages_processed_total 1`,
		`postfix_qmgr_messages_removed_total 1`,
		`postfix_qmgr_messages_inserted_recipients_sum 2`,
		`mailtee_deliveries_total{copy="yes",status="sent",transport="discard"} 1`,
		`mailtee_deliveries_total{copy="no",status="sent",transport="discard"} 1`,
		`postfix_up{path="` + dir + `/queue"} 1`,
		`mailtee_metrics_source_up{source="reconciliation"} 1`,
		`mailtee_ledger_waiting 0`,
		// The message and its copy, once the ledger has them (the
		// figure is recomputed every 10 s at most).
		`mailtee_reconciliation_required 2`,
		`mailtee_reconciliation_delivered 2`,
	}
	var body string
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + web + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, "\n"+w+"\n") {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s in /metrics after 30s:\n%s", missing, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, family := range []string{"mailtee_journal_fsync_seconds_count", "mailtee_reconciliation_ratio", "postfix_showq_queue_depth"} {
		if !strings.Contains(body, "\n"+family) {
			t.Errorf("no %s in /metrics", family)
		}
	}
}
