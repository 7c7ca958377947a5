package ledgerhttp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/ledger/memledger"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func fixture() *memledger.Ledger {
	l := memledger.New(
		ledger.Message{Node: "relay", ID: "R1", MessageID: "<a@b>", From: "alice@example.org", Rcpts: []string{"user1@relay"},
			Arrival: t0, Client: "primary[127.0.0.1]", Size: 1234,
			Deliveries: []ledger.Delivery{{Rcpt: "user1@relay", Status: ledger.Sent, At: t0.Add(time.Second), Transport: "local", Reply: "forwarded as F1", Attempts: 1}}},
		ledger.Message{Node: "relay", ID: "F1", Parent: "R1", Rcpts: []string{"user1@students"}, Arrival: t0.Add(time.Second),
			Deliveries: []ledger.Delivery{{Rcpt: "user1@students", Orig: "user1@relay", Copy: true, Status: ledger.Bounced, DSN: "5.1.1",
				Reply: "550 5.1.1 no such user", RemoteID: "", Attempts: 1}}},
		ledger.Message{Node: "relay", ID: "R2", From: "bob@example.org", Rcpts: []string{"user2@relay"}, Arrival: t0.Add(time.Hour)},
	)
	l.AddGap(ledger.Gap{Node: "relay", Since: t0.Add(2 * time.Hour), Until: t0.Add(3 * time.Hour), Reason: "disk full"})
	return l
}

// serve runs the handler on loopback behind a bearer-token check, as
// internal/web mounts it.
func serve(t *testing.T, r ledger.Reader, token string) string {
	t.Helper()
	mux := http.NewServeMux()
	h := Handler(r)
	mux.Handle(Prefix, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, req)
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	mem := fixture()
	c, err := NewClient(serve(t, mem, "0123456789abcdef-peer-token"), "0123456789abcdef-peer-token")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []ledger.Filter{{}, {Since: t0.Add(time.Minute)}, {Until: t0.Add(time.Minute)}, {User: "alice"}, {Limit: 1}} {
		got, err := c.Messages(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := mem.Messages(ctx, f)
		if !equalJSON(got, want) {
			t.Errorf("Messages(%+v):\n got %+v\nwant %+v", f, got, want)
		}
	}
	m, ok, err := c.Message(ctx, "", "R1")
	want, _, _ := mem.Message(ctx, "", "R1")
	if err != nil || !ok || !reflect.DeepEqual(m, want) {
		t.Errorf("Message R1 = %+v %v %v, want %+v", m, ok, err, want)
	}
	if _, ok, err := c.Message(ctx, "", "NOPE"); ok || err != nil {
		t.Errorf("Message NOPE: ok %v err %v, want not found and no error", ok, err)
	}
	ch, err := c.Children(ctx, "relay", "R1")
	if err != nil || len(ch) != 1 || ch[0].ID != "F1" || ch[0].Deliveries[0].Reply != "550 5.1.1 no such user" {
		t.Errorf("Children = %+v, %v", ch, err)
	}
	gs, err := c.Gaps(ctx, t0, time.Time{})
	if err != nil || len(gs) != 1 || gs[0].Reason != "disk full" {
		t.Errorf("Gaps = %+v, %v", gs, err)
	}
	if gs, err := c.Gaps(ctx, t0, t0.Add(time.Hour)); err != nil || len(gs) != 0 {
		t.Errorf("Gaps before the gap = %+v, %v", gs, err)
	}
}

// equalJSON compares what crossed the wire: nil and empty slices alike.
func equalJSON(a, b []ledger.Message) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].ID != b[i].ID || !a[i].Arrival.Equal(b[i].Arrival) || len(a[i].Deliveries) != len(b[i].Deliveries) {
			return false
		}
	}
	return true
}

func TestErrorsNameThePeer(t *testing.T) {
	ctx := context.Background()
	url := serve(t, fixture(), "right")
	c, _ := NewClient(url, "wrong")
	_, err := c.Messages(ctx, ledger.Filter{})
	if err == nil || !strings.Contains(err.Error(), url) || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "ledger_peer_token_file") {
		t.Errorf("wrong token: %v", err)
	}
	if _, _, err := c.Message(ctx, "", "R1"); err == nil {
		t.Error("wrong token: Message gave no error")
	}

	// A peer that is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close()
	c, _ = NewClient(down, "x")
	if _, _, err := c.Message(ctx, "", "R1"); err == nil || !strings.Contains(err.Error(), down) {
		t.Errorf("peer down: %v", err)
	}

	// Something else at the URL: its 404 is not "no such message".
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	c, _ = NewClient(other.URL, "x")
	if _, ok, err := c.Message(ctx, "", "R1"); err == nil || ok {
		t.Errorf("not a ledger: ok %v err %v, want an error", ok, err)
	}

	for _, bad := range []string{"", "ftp://x", "localhost:80", "http://"} {
		if _, err := NewClient(bad, "x"); err == nil {
			t.Errorf("NewClient(%q): no error", bad)
		}
	}
}

func TestTimeoutAndSizeLimit(t *testing.T) {
	ctx := context.Background()
	stall := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stall:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(stall)
	c, _ := NewClient(slow.URL, "x")
	c.HTTP.Timeout = 200 * time.Millisecond
	if _, err := c.Messages(ctx, ledger.Filter{}); err == nil || !strings.Contains(err.Error(), slow.URL) {
		t.Errorf("stalled peer: %v", err)
	}

	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"messages":[` + strings.Repeat(`{"queue_id":"X"},`, 10000) + `{}]}`))
	}))
	defer big.Close()
	c, _ = NewClient(big.URL, "x")
	c.MaxReply = 4096
	if _, err := c.Messages(ctx, ledger.Filter{}); err == nil || !strings.Contains(err.Error(), "larger than 4096") {
		t.Errorf("huge reply: %v", err)
	}
	c.MaxReply = 1 << 20
	if ms, err := c.Messages(ctx, ledger.Filter{}); err != nil || len(ms) != 10001 {
		t.Errorf("reply within the limit: %d, %v", len(ms), err)
	}
}

func TestHandlerRefuses(t *testing.T) {
	h := Handler(fixture())
	for _, tc := range []struct {
		method, target string
		code           int
	}{
		{"POST", "/ledger/v1/messages", 405},
		{"DELETE", "/ledger/v1/message?id=R1", 405},
		{"GET", "/ledger/v1/messages?since=yesterday", 400},
		{"GET", "/ledger/v1/messages?limit=-1", 400},
		{"GET", "/ledger/v1/message", 400},
		{"GET", "/ledger/v1/children", 400},
		{"GET", "/ledger/v1/nope", 404},
		{"GET", "/ledger/v1/messages?since=2026-12-07T10:00:00Z", 200},
		{"HEAD", "/ledger/v1/gaps", 200},
		{"GET", "/gaps", 200}, // behind http.StripPrefix("/ledger/v1", ...)
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.target, nil))
		if w.Code != tc.code {
			t.Errorf("%s %s: %d, want %d (%s)", tc.method, tc.target, w.Code, tc.code, w.Body)
		}
	}
	mem := fixture()
	mem.Err = errors.New("database is locked")
	w := httptest.NewRecorder()
	Handler(mem).ServeHTTP(w, httptest.NewRequest("GET", "/ledger/v1/messages", nil))
	if w.Code != 500 || !strings.Contains(w.Body.String(), "database is locked") {
		t.Errorf("failing ledger: %d %s", w.Code, w.Body)
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		content, want string
		ok            bool
	}{
		{"0123456789abcdef-peer-token\n", "0123456789abcdef-peer-token", true},
		{"  0123456789abcdef-peer-token  \r\n", "0123456789abcdef-peer-token", true},
		{"\n\n", "", false},
		{"a\nb\n", "", false},
	} {
		f := filepath.Join(dir, "token")
		os.WriteFile(f, []byte(tc.content), 0o600)
		got, err := ReadToken(f)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ReadToken(%q) = %q, %v", tc.content, got, err)
		}
	}
	if _, err := ReadToken(filepath.Join(dir, "absent")); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Errorf("absent file: %v", err)
	}
}

// FuzzQuery: any query string gets a 200 or a 400, never a panic.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{"", "since=2026-12-07T10:00:00Z&until=2026-12-08T00:00:00.5+01:00", "limit=3&user=alice", "limit=99999999999999999999", "since=%zz"} {
		f.Add(s)
	}
	h := Handler(fixture())
	f.Fuzz(func(t *testing.T, q string) {
		for _, ep := range []string{"messages", "gaps"} {
			req := httptest.NewRequest("GET", "/ledger/v1/"+ep, nil)
			req.URL.RawQuery = q
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 && w.Code != 400 {
				t.Fatalf("%s?%s: %d %s", ep, q, w.Code, w.Body)
			}
		}
	})
}

type fixedReply struct {
	code int
	body []byte
}

func (f fixedReply) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: f.code, Status: http.StatusText(f.code), Body: io.NopCloser(bytes.NewReader(f.body)),
		Header: http.Header{}, Request: r}, nil
}

// FuzzClientReply: whatever a peer answers, the client returns a value
// or an error naming the peer, never a panic.
func FuzzClientReply(f *testing.F) {
	f.Add(200, []byte(`{"messages":[{"queue_id":"A","deliveries":[{"rcpt":"a@b","status":"sent"}]}]}`))
	f.Add(200, []byte(`{"message":{"queue_id":"A"}}`))
	f.Add(404, []byte(`{"error":"no message A"}`))
	f.Add(500, []byte(`{"error":"x"}`))
	f.Add(200, []byte(`{"gaps":[{"since":"2026-12-07T10:00:00Z"}]}`))
	f.Add(200, []byte(`[`))
	f.Fuzz(func(t *testing.T, code int, body []byte) {
		if code < 100 || code > 599 {
			return
		}
		c, _ := NewClient("http://peer.example:9100", "t")
		c.HTTP.Transport = fixedReply{code, body}
		c.MaxReply = 1 << 16
		ctx := context.Background()
		check := func(err error) {
			if err != nil && !strings.Contains(err.Error(), "http://peer.example:9100") {
				t.Fatalf("error without the peer: %v", err)
			}
		}
		_, err := c.Messages(ctx, ledger.Filter{})
		check(err)
		_, _, err = c.Message(ctx, "", "A")
		check(err)
		_, err = c.Children(ctx, "n", "A")
		check(err)
		_, err = c.Gaps(ctx, time.Time{}, time.Time{})
		check(err)
	})
}
