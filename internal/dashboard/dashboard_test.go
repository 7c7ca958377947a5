package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/report"
)

var now = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func (s *scenario) source() Source {
	return NewSource(report.Sources{Local: s.prim, Peers: []report.Peer{{URL: "http://127.0.0.2:9100", Reader: s.rel}}},
		func() []queue.Info { return s.queue })
}

func serve(t *testing.T, src Source) *httptest.Server {
	srv := httptest.NewServer(Handler(src))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestAdvice(t *testing.T) {
	for _, c := range []struct{ reply, want string }{
		{"550-5.1.1 The email account that you tried to reach does not exist. - gsmtp", "create it at the provider"},
		{"550 5.1.1 <user1@students.iiit.ac.in>: Recipient address rejected: User unknown in local recipient table", "create it at the provider"},
		{"550 5.7.1 Relaying denied. IP name lookup failed [192.0.2.1]", "allow-list the relay's IP"},
		{"554 5.7.1 IP not in whitelist", "allow-list the relay's IP"},
		{"554 5.7.1 <u@x>: Relay access denied", "allow-list the relay's IP"},
		{"530 5.7.0 Must issue a STARTTLS command first. - gsmtp", "requires TLS"},
		{"connect to relay.students.iiit.ac.in[127.0.0.2]:2525: Connection refused", "next hop is down"},
		{"conversation with mx[192.0.2.9] timed out while receiving the initial server greeting", "next hop is down"},
		{"421 4.7.28 [192.0.2.1] Our system has detected an unusual rate of unsolicited mail", "throttling"},
		{"450 4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages", "throttling"},
		{"452 4.2.2 The email account that you tried to reach is over quota", "mailbox is full"},
		{"552 5.2.2 mailbox full", "mailbox is full"},
		{"250 2.0.0 Ok", ""},
		{"", ""},
	} {
		got := Advice(c.reply)
		if c.want == "" && got != "" || !strings.Contains(got, c.want) {
			t.Errorf("Advice(%q) = %q, want it to say %q", c.reply, got, c.want)
		}
	}
}

func TestQueueByDestination(t *testing.T) {
	list := []queue.Info{
		{ID: "A", Arrival: now.Add(-time.Hour), Rcpts: []queue.RcptInfo{
			{Addr: "u1@Relay.example", Status: "deferred"}, {Addr: "u2@relay.example", Status: "pending"}, {Addr: "u3@relay.example", Status: "sent"}}},
		{ID: "B", Arrival: now.Add(-time.Minute), Rcpts: []queue.RcptInfo{
			{Addr: "u1@relay.example", Status: "pending"}, {Addr: "x@other.example", Status: "deferred"}, {Addr: "root", Status: "bounced"}}},
	}
	got := QueueByDestination(list, now)
	want := []QueueDest{
		{Destination: "relay.example", Recipients: 3, Messages: 2, Deferred: 1, Oldest: now.Add(-time.Hour), OldestAge: 3600},
		{Destination: "other.example", Recipients: 1, Messages: 1, Deferred: 1, Oldest: now.Add(-time.Minute), OldestAge: 60},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestHeadersAndReadOnly(t *testing.T) {
	srv := serve(t, newScenario(20, now).source())
	for _, path := range []string{"/", "/assets/dashboard.js", "/assets/dashboard.css", "/api/overview", "/api/report", "/api/user?q=user1", "/api/queue"} {
		resp, body := get(t, srv.URL+path)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %s %s", path, resp.Status, body)
			continue
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", path)
		}
	}
	for _, path := range []string{"/nope", "/api/nope", "/assets/nope.js"} {
		if resp, _ := get(t, srv.URL+path); resp.StatusCode != 404 {
			t.Errorf("GET %s: %s, want 404", path, resp.Status)
		}
	}
	if resp, _ := get(t, srv.URL+"/api/user"); resp.StatusCode != 400 {
		t.Errorf("GET /api/user without q: %s, want 400", resp.Status)
	}
	resp, err := http.Post(srv.URL+"/api/overview", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %s, want 405", resp.Status)
	}
}

// The page may not load anything from elsewhere: the host has no
// internet, and the CSP would refuse it anyway.
func TestAssetsSelfContained(t *testing.T) {
	for _, name := range []string{"assets/index.html", "assets/dashboard.js", "assets/dashboard.css"} {
		b, err := assets.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, bad := range []string{"http://", "https://", "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", " style=", "<style", "onclick="} {
			if strings.Contains(s, bad) && !(bad == "http://" && strings.Contains(s, "http://www.w3.org/2000/svg") && strings.Count(s, "http://") == 1) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
		if strings.Contains(name, "html") && strings.Count(s, "<script") != 1 {
			t.Errorf("%s: want exactly one <script src>", name)
		}
	}
}

func TestOverviewMatchesReport(t *testing.T) {
	s := newScenario(120, now)
	srv := serve(t, s.source())
	_, body := get(t, srv.URL+"/api/overview")
	var ov struct {
		Report report.Report     `json:"report"`
		Queue  []QueueDest       `json:"queue"`
		Advice map[string]string `json:"advice"`
	}
	if err := json.Unmarshal(body, &ov); err != nil {
		t.Fatal(err)
	}
	_, body = get(t, srv.URL+"/api/report")
	var rep report.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	if ov.Report.Reconciliation.Required != rep.Reconciliation.Required || ov.Report.Summary.Accepted != 120 || rep.Summary.Accepted != 120 {
		t.Errorf("overview %+v, report %+v", ov.Report.Summary, rep.Summary)
	}
	if len(ov.Report.Messages) != 0 || len(rep.Messages) != 120 {
		t.Errorf("overview has %d messages (want 0), report %d (want 120)", len(ov.Report.Messages), len(rep.Messages))
	}
	if rep.Summary.Copies.Failed != 1 || rep.Summary.Copies.Pending == 0 {
		t.Errorf("copies %+v, want 1 failed and some pending", rep.Summary.Copies)
	}
	if len(ov.Queue) != 1 || ov.Queue[0].Destination != relay || ov.Queue[0].Recipients != rep.Summary.Copies.Pending {
		t.Errorf("queue %+v, want %d recipients for %s", ov.Queue, rep.Summary.Copies.Pending, relay)
	}
	var failed string
	for _, m := range rep.Misses {
		if m.State == report.Failed {
			failed = m.Reply
		}
	}
	if a := ov.Advice[failed]; !strings.Contains(a, "create it at the provider") {
		t.Errorf("advice for %q: %q", failed, a)
	}
}

func TestUserNewestFirstAndLimited(t *testing.T) {
	const limit = 5
	s := newScenario(limit*40+400, now)
	srv := httptest.NewServer(newHandler(s.source(), limit))
	defer srv.Close()
	_, body := get(t, srv.URL+"/api/user?q=user5")
	var uv struct {
		Report    report.Report `json:"report"`
		Truncated bool          `json:"truncated"`
	}
	if err := json.Unmarshal(body, &uv); err != nil {
		t.Fatal(err)
	}
	ms := uv.Report.Messages
	if len(ms) != limit || !uv.Truncated {
		t.Fatalf("%d messages, truncated %v; want %d, true", len(ms), uv.Truncated, limit)
	}
	for i := 1; i < len(ms); i++ {
		if ms[i].Arrival.After(ms[i-1].Arrival) {
			t.Fatalf("message %d arrived after %d: not newest first", i, i-1)
		}
	}
	if uv.Report.Summary.Accepted != 15 {
		t.Errorf("the figures count %d messages: want all of user5's (15), not the %d shown", uv.Report.Summary.Accepted, limit)
	}
	for _, m := range ms {
		if m.Rcpts[0] != "user5@"+primary {
			t.Fatalf("message %s is to %v, not user5", m.ID, m.Rcpts)
		}
	}
}

type failing struct{}

func (failing) Report(context.Context, ledger.Filter, time.Time) (*report.Report, error) {
	return nil, errors.New("ledger.db: database disk image is malformed")
}
func (failing) Queue(context.Context, time.Time) ([]QueueDest, error) { return nil, nil }

func TestLedgerErrorIsAnAnswer(t *testing.T) {
	srv := serve(t, failing{})
	resp, body := get(t, srv.URL+"/api/overview")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "malformed") {
		t.Errorf("%s %s", resp.Status, body)
	}
}
