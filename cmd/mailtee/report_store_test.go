package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/ledgerhttp"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/report"
)

// record writes messages into a real SQLite ledger through the
// Recorder, as serve does: each rcpt's outcome, then the final state.
type outcome struct {
	status, reply, relay, transport string
}

func record(t *testing.T, path, node string, msgs []*queue.Message, outs [][]outcome) {
	t.Helper()
	r := ledger.NewRecorder(ledger.RecorderOptions{Path: path, Node: node, Marker: path + ".state", Log: func(string, ...any) {}})
	for k, m := range msgs {
		r.Accepted(m)
		for i, o := range outs[k] {
			switch o.status {
			case "sent":
				m.Rcpts[i].Status = queue.Sent
			case "bounced":
				m.Rcpts[i].Status = queue.Bounced
			}
			m.Rcpts[i].Attempt = &queue.Attempt{LastErr: o.reply, Relay: o.relay}
			r.Delivery(m, i, envelope.Hop{Transport: o.transport}, queue.Outcome{Relay: o.relay, Reply: o.reply}, o.status, time.Now())
		}
		done := make(chan struct{})
		r.Final(m, false, func() { close(done) })
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatal("the ledger never committed")
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func qmsg(id, parent string, rcpts ...envelope.Rcpt) *queue.Message {
	env := &envelope.Envelope{From: "alice@example.org", ClientName: "mx.example.org", ClientAddr: "192.0.2.1",
		Arrival: time.Now().Add(-time.Minute), MessageID: "<1@example.org>", Parent: parent, Rcpts: rcpts}
	return queue.NewMemMessage(id, env, []byte("x\r\n"))
}

// The seed's path through two real SQLite ledgers: the primary's read
// by the command, the relay's served over loopback HTTP behind the
// token, as on the relay's metrics_listen.
func TestReportRealLedgers(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	const prim, rel = "students.example", "relay.students.example"
	record(t, filepath.Join(data, "ledger.db"), prim, []*queue.Message{
		qmsg("4dP1", "", envelope.Rcpt{Addr: "user1@" + prim}, envelope.Rcpt{Addr: "user1@" + rel, Orig: "user1@" + prim, Copy: true}),
	}, [][]outcome{{
		{"sent", "delivered to maildir", "local", "local"},
		{"sent", "250 2.0.0 Ok: queued as 4dR1", rel + "[127.0.0.1]:2526", "smtp"},
	}})
	relDB := filepath.Join(dir, "relay", "ledger.db")
	record(t, relDB, rel, []*queue.Message{
		qmsg("4dR1", "", envelope.Rcpt{Addr: "user1@" + rel, Copy: true}),
		qmsg("4dF1", "4dR1", envelope.Rcpt{Addr: "user1@" + prim, Orig: "user1@" + rel, Copy: true}),
	}, [][]outcome{
		{{"sent", "forwarded as 4dF1", "local", "local"}},
		{{"bounced", "host mx.provider.example[127.0.0.1] said: 550 5.1.1 no such user", "mx.provider.example[127.0.0.1]:2527", "smtp"}},
	})
	st, err := ledger.OpenReader(relDB)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := ledgerhttp.Handler(st)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer 0123456789abcdef-peer-token" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	defer srv.Close()
	os.WriteFile(filepath.Join(dir, "token"), []byte("0123456789abcdef-peer-token\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("data_directory = "+data+"\nqueue_directory = "+filepath.Join(dir, "spool")+
		"\nledger_peers = "+srv.URL+"\nledger_peer_token_file = "+filepath.Join(dir, "token")+"\n"), 0o644)

	code, out, errs := mailtee(t, "", "report", "-c", dir, "--format", "json")
	var r report.Report
	if code != reportMisses || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("exit %d %q\n%s", code, errs, out)
	}
	if r.Reconciliation.Required != 2 || r.Reconciliation.Delivered != 1 || len(r.Misses) != 1 {
		t.Fatalf("reconciliation %+v, misses %+v", r.Reconciliation, r.Misses)
	}
	m := r.Misses[0]
	if m.Rcpt != "user1@"+rel || m.State != report.Failed || m.Reply != "host mx.provider.example[127.0.0.1] said: 550 5.1.1 no such user" || len(m.Chain) != 3 {
		t.Errorf("miss %+v", m)
	}
	if m.Chain[2].Node != rel || m.Chain[2].QueueID != "4dF1" || m.Chain[2].Peer != srv.URL {
		t.Errorf("chain %+v", m.Chain)
	}

	code, out, errs = mailtee(t, "", "status", "-c", dir)
	if code != exitOK {
		t.Errorf("status: exit %d %q\n%s", code, errs, out)
	}
}
