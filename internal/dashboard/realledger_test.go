package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/dashboard/browsertest"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/ledgerhttp"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/report"
)

// outcome is one recipient's delivery as the queue tells the ledger.
type outcome struct {
	status, reply, relay, transport string
}

// record writes msgs into a real SQLite ledger through the Recorder, as
// serve does: each recipient's outcome, then the final state of the
// messages that are done (final[k]).
func record(t *testing.T, path, node string, msgs []*queue.Message, outs [][]outcome, final []bool) {
	t.Helper()
	r := ledger.NewRecorder(ledger.RecorderOptions{Path: path, Node: node, Log: func(string, ...any) {}})
	for k, m := range msgs {
		r.Accepted(m)
		for i, o := range outs[k] {
			out := queue.Outcome{Relay: o.relay}
			switch o.status {
			case "sent":
				m.Rcpts[i].Status = queue.Sent
				out.Reply = o.reply
			case "bounced":
				m.Rcpts[i].Status = queue.Bounced
				out.Err = errors.New(o.reply)
			default:
				m.Rcpts[i].Attempts++
				out.Err = errors.New(o.reply)
			}
			m.Rcpts[i].Attempt = &queue.Attempt{LastErr: o.reply, Relay: o.relay}
			r.Delivery(m, i, envelope.Hop{Transport: o.transport}, out, o.status, time.Now())
		}
		if !final[k] {
			continue
		}
		done := make(chan struct{})
		r.Final(m, false, func() { close(done) })
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatal("the ledger never committed")
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func qmsg(id, parent string, at time.Time, rcpts ...envelope.Rcpt) *queue.Message {
	env := &envelope.Envelope{From: "alice@example.org", ClientName: "mx.example.org", ClientAddr: "192.0.2.1",
		Arrival: at, MessageID: "<" + id + "@example.org>", Parent: parent, Rcpts: rcpts}
	return queue.NewMemMessage(id, env, []byte("x\r\n"))
}

// seedRun records n messages of the seed's layout into the primary's
// and the relay's ledgers, from message first on: the copy of message 2
// refused by the provider, the copies of the last `pending` ones
// deferred (the relay down).
func seedRun(t *testing.T, primDB, relDB string, first, n, pending int) {
	const prim, rel = primary, relay
	var pm, rm []*queue.Message
	var po, ro [][]outcome
	var pf, rf []bool
	for i := first; i < first+n; i++ {
		user := fmt.Sprintf("user%d", i%7+1)
		at := time.Now().Add(-time.Duration(first+n-i) * time.Minute)
		id, rid := fmt.Sprintf("4dP%03d", i), fmt.Sprintf("4dR%03d", i)
		pm = append(pm, qmsg(id, "", at, envelope.Rcpt{Addr: user + "@" + prim},
			envelope.Rcpt{Addr: user + "@" + rel, Orig: user + "@" + prim, Copy: true}))
		if i >= first+n-pending {
			po = append(po, []outcome{{"sent", "delivered to maildir", "local", "local"},
				{"deferred", "connect to " + rel + "[127.0.0.2]:2526: Connection refused", "", "smtp"}})
			pf = append(pf, false)
			continue
		}
		po = append(po, []outcome{{"sent", "delivered to maildir", "local", "local"},
			{"sent", "250 2.0.0 Ok: queued as " + rid, rel + "[127.0.0.2]:2526", "smtp"}})
		pf = append(pf, true)
		prov := outcome{"sent", fmt.Sprintf("250 2.0.0 OK %d x%03dsi - gsmtp", at.Unix(), i), "aspmx.l.google.com[127.0.0.3]:2527", "smtp"}
		if i == 2 {
			prov = outcome{"bounced", "host aspmx.l.google.com[127.0.0.3] said: 550-5.1.1 The email account that you tried to reach does not exist", prov.relay, "smtp"}
		}
		rm = append(rm, qmsg(rid, "", at, envelope.Rcpt{Addr: user + "@" + rel, Copy: true}),
			qmsg("4dF"+rid[3:], rid, at, envelope.Rcpt{Addr: user + "@" + prim, Orig: user + "@" + rel, Copy: true}))
		ro = append(ro, []outcome{{"sent", "forwarded as 4dF" + rid[3:], "local", "local"}}, []outcome{prov})
		rf = append(rf, true, true)
	}
	record(t, primDB, prim, pm, po, pf)
	record(t, relDB, rel, rm, ro, rf)
}

// buildMailtee builds cmd/mailtee into dir.
func buildMailtee(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "mailtee")
	cmd := exec.Command(goTool, "build", "-o", bin, "github.com/mailtee/mailtee/cmd/mailtee")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/mailtee: %v\n%s", err, out)
	}
	return bin
}

// cmdReport runs `mailtee report -c dir --format json`.
func cmdReport(t *testing.T, bin, dir string) *report.Report {
	t.Helper()
	out, err := exec.Command(bin, "report", "-c", dir, "--format", "json").Output()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) { // 1: misses, as here
		t.Fatalf("mailtee report: %v\n%s", err, out)
	}
	var rep report.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("mailtee report --format json: %v\n%s", err, out)
	}
	return &rep
}

// TestBrowserRealLedgers: the two hosts' ledgers are real SQLite files
// written by the Recorder; the relay's is served over loopback HTTP
// with the peer token, as on its listener; the page shows the same
// figures as the command `mailtee report --format json` run on the
// primary's configuration, before and after one more message.
func TestBrowserRealLedgers(t *testing.T) {
	b := browsertest.Start(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	primDB, relDB := filepath.Join(data, "ledger.db"), filepath.Join(dir, "relay", "ledger.db")
	seedRun(t, primDB, relDB, 0, 12, 2)

	rst, err := ledger.OpenReader(relDB)
	if err != nil {
		t.Fatal(err)
	}
	defer rst.Close()
	lh := ledgerhttp.Handler(rst)
	relSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer 0123456789abcdef-peer-token" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		lh.ServeHTTP(w, r)
	}))
	defer relSrv.Close()
	os.WriteFile(filepath.Join(dir, "token"), []byte("0123456789abcdef-peer-token\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("data_directory = "+data+"\nqueue_directory = "+filepath.Join(dir, "spool")+
		"\nledger_peers = "+relSrv.URL+"\nledger_peer_token_file = "+filepath.Join(dir, "token")+"\n"), 0o644)
	bin := buildMailtee(t, dir)

	pst, err := ledger.OpenReader(primDB)
	if err != nil {
		t.Fatal(err)
	}
	defer pst.Close()
	peer, err := ledgerhttp.NewClient(relSrv.URL, "0123456789abcdef-peer-token")
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, NewSource(report.Sources{Local: pst, Peers: []report.Peer{{URL: relSrv.URL, Reader: peer}}}, nil))
	if err := b.Open(srv.URL+"/?refresh=0.5", time.Minute); err != nil {
		t.Fatal(err)
	}
	rep := cmdReport(t, bin, dir)
	if rep.Summary.Accepted != 12 || rep.Summary.Copies.Failed != 1 || rep.Summary.Copies.Pending != 2 || rep.Reconciliation.Required != 24 {
		t.Fatalf("mailtee report: %+v %+v, want 12 messages, 24 required, a copy failed, 2 pending", rep.Summary, rep.Reconciliation)
	}
	if err := b.CheckFigures(rep); err != nil {
		t.Error(err)
	}

	seedRun(t, primDB, relDB, 12, 1, 0)
	rep = cmdReport(t, bin, dir)
	if rep.Summary.Accepted != 13 {
		t.Fatalf("mailtee report: %d accepted after one more, want 13", rep.Summary.Accepted)
	}
	if err := b.WaitFigure("accepted", strconv.Itoa(rep.Summary.Accepted), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.CheckFigures(rep); err != nil {
		t.Error(err)
	}
	noErrors(t, b)
}
