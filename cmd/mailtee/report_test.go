package main

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/ledger/memledger"
	"github.com/mailtee/mailtee/internal/ledgerhttp"
	"github.com/mailtee/mailtee/internal/report"
)

// reportSetup writes a main.cf whose ledger is local (an in-memory
// one, through the openLedger hook) and whose peer is the relay's
// ledger served on loopback behind the token.
func reportSetup(t *testing.T, peerURL string) (dir string, prim, rel *memledger.Ledger) {
	t.Helper()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	prim, rel = memledger.Seed(t0)
	dir = t.TempDir()
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	os.WriteFile(filepath.Join(data, "ledger.db"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "token"), []byte("0123456789abcdef-peer-token\n"), 0o600)
	if peerURL == "" {
		h := ledgerhttp.Handler(rel)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer 0123456789abcdef-peer-token" {
				http.Error(w, "no", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		peerURL = srv.URL
	}
	cf := "data_directory = " + data + "\nqueue_directory = " + filepath.Join(dir, "spool") +
		"\nledger_peers = " + peerURL + "\nledger_peer_token_file = " + filepath.Join(dir, "token") + "\n"
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o644)
	old := openLedger
	openLedger = func(path string) (ledger.Reader, io.Closer, error) {
		if path != filepath.Join(data, "ledger.db") {
			t.Errorf("ledger path %s", path)
		}
		return prim, io.NopCloser(nil), nil
	}
	t.Cleanup(func() { openLedger = old })
	return dir, prim, rel
}

func TestReportFormats(t *testing.T) {
	dir, _, _ := reportSetup(t, "")
	code, out, errs := mailtee(t, "", "report", "-c", dir)
	if code != reportMisses || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	for _, w := range []string{"reconciliation:       75.00% (3 of 4", "550 5.1.1", "path: students.iiit.ac.in P1 user2@relay.students.iiit.ac.in > relay.students.iiit.ac.in R1"} {
		if !strings.Contains(out, w) {
			t.Errorf("text lacks %q:\n%s", w, out)
		}
	}

	code, out, errs = mailtee(t, "", "report", "-c", dir, "--format", "json", "--since", "1d")
	var r report.Report
	if code != reportMisses || json.Unmarshal([]byte(out), &r) != nil {
		t.Fatalf("json: exit %d %q\n%s", code, errs, out)
	}
	if r.Reconciliation.Required != 4 || r.Reconciliation.Delivered != 3 || len(r.Misses) != 1 || r.Misses[0].Reply == "" {
		t.Errorf("json figures %+v", r.Reconciliation)
	}

	code, out, _ = mailtee(t, "", "report", "-c", dir, "--format=csv")
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if code != reportMisses || err != nil || len(rows) != 5 || rows[0][0] != "node" {
		t.Fatalf("csv: exit %d, %v\n%s", code, err, out)
	}
	failed := 0
	for _, row := range rows[1:] {
		if row[10] == "failed" {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("csv: %d failed rows\n%s", failed, out)
	}

	// Nothing arrived in the last minute: nothing missed.
	if code, out, errs := mailtee(t, "", "report", "-c", dir, "--since", "1m"); code != reportOK {
		t.Errorf("--since 1m: exit %d %q\n%s", code, errs, out)
	}
	// user1's message is the same message: the miss is user2's copy.
	if code, _, _ := mailtee(t, "", "report", "-c", dir, "--user", "nobody@example.org"); code != reportOK {
		t.Errorf("--user nobody: exit %d", code)
	}
}

func TestReportErrors(t *testing.T) {
	dir, _, _ := reportSetup(t, "")
	for _, args := range [][]string{
		{"--since", "yesterday"},
		{"--format", "xml"},
		{"--postfix-log", "/var/log/mail.log"},
		{"extra"},
		{"--nope"},
	} {
		code, _, errs := mailtee(t, "", append([]string{"report", "-c", dir}, args...)...)
		if code != reportError || errs == "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, errs)
		}
	}

	// A peer that is down: the report is printed, counted by the
	// local state, and the exit status says an error happened.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + ln.Addr().String()
	ln.Close()
	dir, _, _ = reportSetup(t, down)
	code, out, errs := mailtee(t, "", "report", "-c", dir)
	if code != reportError || !strings.Contains(errs, down) || !strings.Contains(out, "INCOMPLETE") {
		t.Errorf("peer down: exit %d, stderr %q\n%s", code, errs, out)
	}

	// No ledger file.
	dir, _, _ = reportSetup(t, "")
	os.Remove(filepath.Join(dir, "data", "ledger.db"))
	if code, _, errs := mailtee(t, "", "report", "-c", dir); code != reportError || !strings.Contains(errs, "no ledger at") {
		t.Errorf("no ledger: exit %d, %q", code, errs)
	}
}

func TestLongValueFlags(t *testing.T) {
	code, _, errs := mailtee(t, "", "report", "--since")
	if code != reportError || !strings.Contains(errs, "since") {
		t.Errorf("--since without a value: %d %q", code, errs)
	}
}

func TestStatus(t *testing.T) {
	dir, prim, _ := reportSetup(t, "")
	now := time.Now()
	prim.Add(ledger.Message{Node: "n", ID: "X", Arrival: now.Add(-time.Minute), Deliveries: []ledger.Delivery{
		{Rcpt: "a@b", Status: ledger.Sent, At: now.Add(-30 * time.Second)},
		{Rcpt: "c@d", Copy: true, Status: ledger.Pending, Reply: "421 try later"}}})
	code, out, errs := mailtee(t, "", "status", "-c", dir)
	if code != exitOK {
		t.Fatalf("exit %d %q", code, errs)
	}
	for _, w := range []string{"server stopped", "queue: 0 messages", "sent in the last minute: 1", "copies, last 24h: 2 delivered, 1 pending, 0 failed", "reconciliation, last 24h on this host: 83.33% (5 of 6", "X 1m to=<c@d> [copy] pending: 421 try later"} {
		if !strings.Contains(out, w) {
			t.Errorf("status lacks %q:\n%s", w, out)
		}
	}
}

// FuzzReportArgs: any arguments give exit 0, 1 or 2 and never a panic;
// an unparsable time is always refused.
func FuzzReportArgs(f *testing.F) {
	for _, s := range []string{"--since\x0024h", "--until=2026-12-07\x00--format\x00csv", "--user\x00--since", "-c", "--format\x00json\x00--since\x007d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dir, _, _ := reportSetup(t, "http://127.0.0.1:1")
		args := append([]string{"report", "-c", dir}, strings.Split(s, "\x00")...)
		code, _, _ := mailtee(t, "", args...)
		if code != reportOK && code != reportMisses && code != reportError {
			t.Fatalf("%q: exit %d", args, code)
		}
	})
}
