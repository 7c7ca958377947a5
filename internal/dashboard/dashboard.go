// Package dashboard serves mailtee's migration dashboard: one page
// (/), its assets (/assets/..., embedded: the hosts it runs on have no
// internet, and there is no build step) and its read-only JSON (/api/...).
//
// The page shows the figures of internal/report (the same JSON as
// `mailtee report --format json`): the reconciliation figure, required
// deliveries per destination over time, top deferral reasons, recent
// failures with advice (Advice), and one user's messages with each
// delivery's chain through the relay; beside them the live queue by
// destination (QueueByDestination). It polls /api/overview every few
// seconds (?refresh=N on the page's URL sets N).
//
// Everything from the ledger is attacker-controlled (addresses,
// replies): the page's script puts it in the document as text only,
// and every answer carries Content-Security-Policy default-src 'self',
// so no inline script or style runs. Who may reach the handler is
// internal/web's business.
package dashboard

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"log"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/report"
)

//go:embed assets
var assets embed.FS

// Source gives the dashboard its figures.
type Source interface {
	// Report is the reconciliation of the ledgers for f at now, the
	// same as `mailtee report --format json` prints.
	Report(ctx context.Context, f ledger.Filter, now time.Time) (*report.Report, error)
	// Queue is the live queue by destination (QueueByDestination);
	// nil when there is no queue to read.
	Queue(ctx context.Context, now time.Time) ([]QueueDest, error)
}

// NewSource is the Source of a running server: reports built by
// report.Build from src, and the queue by destination from list (nil:
// none shown).
func NewSource(src report.Sources, list func() []queue.Info) Source {
	return &source{src: src, list: list}
}

type source struct {
	src  report.Sources
	list func() []queue.Info
}

func (s *source) Report(ctx context.Context, f ledger.Filter, now time.Time) (*report.Report, error) {
	return report.Build(ctx, s.src, f, now)
}

func (s *source) Queue(ctx context.Context, now time.Time) ([]QueueDest, error) {
	if s.list == nil {
		return nil, nil
	}
	return QueueByDestination(s.list(), now), nil
}

// UserLimit is how many of a user's messages the search shows, newest
// first (the figures above them count all).
const UserLimit = 100

// CacheFor is how long one build of the report answers the overview:
// every open page polls it, and a report reads the whole ledger.
const CacheFor = 2 * time.Second

// Handler serves the dashboard for src.
func Handler(src Source) http.Handler {
	return newHandler(src, UserLimit)
}

func newHandler(src Source, userLimit int) http.Handler {
	h := &handler{src: src, now: time.Now, userLimit: userLimit, searches: make(chan struct{}, 1)}
	static, _ := fs.Sub(assets, "assets")
	mux := http.NewServeMux()
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, static, "index.html")
	})
	mux.HandleFunc("GET /api/overview", h.overview)
	mux.HandleFunc("GET /api/report", h.report)
	mux.HandleFunc("GET /api/user", h.user)
	mux.HandleFunc("GET /api/queue", h.queue)
	return secure(mux)
}

// secure adds the headers every answer carries and refuses anything
// but reading.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			hd.Set("Allow", "GET, HEAD")
			http.Error(w, "the dashboard is read-only", http.StatusMethodNotAllowed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

type handler struct {
	src       Source
	now       func() time.Time
	userLimit int

	// mu makes the overview's builds one at a time: a request that
	// waited for another's build takes its result.
	mu      sync.Mutex
	builtAt time.Time
	built   Overview
	// searches holds one user search at a time: each reads the
	// whole ledger.
	searches chan struct{}
}

// Window is how far back the dashboard and /metrics reconcile by
// default: the messages that arrived in the last 24 hours. A report
// follows each copy into the peers' ledgers, so its cost grows with the
// messages it covers; `?since=7d` (or all) widens a page's window, and
// `mailtee report` covers the whole ledger.
const Window = 24 * time.Hour

// window is the filter a request asks for: ?since=T (an age, a date, RFC
// 3339, or "all"), Window by default.
func (h *handler) window(r *http.Request) (ledger.Filter, bool, error) {
	since := strings.TrimSpace(r.URL.Query().Get("since"))
	switch since {
	case "":
		return ledger.Filter{Since: h.now().Add(-Window)}, true, nil
	case "all":
		return ledger.Filter{}, false, nil
	}
	t, err := report.ParseTime(since, h.now(), time.Local)
	if err != nil {
		return ledger.Filter{}, false, err
	}
	return ledger.Filter{Since: t}, false, nil
}

// cached is the overview of f, at most CacheFor old when f is the
// default window (the one every open page asks for).
func (h *handler) cached(ctx context.Context, f ledger.Filter, dflt bool) (Overview, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if dflt && h.built.Report != nil && time.Since(h.builtAt) < CacheFor {
		return h.built, nil
	}
	raw, err := h.build(ctx, f)
	if err != nil {
		return Overview{}, err
	}
	ov := Overview{Advice: adviceFor(raw), Report: withoutMessages(raw), Queue: []QueueDest{}}
	// Walking a backlog's queue costs too: it is cached with the report.
	q, err := h.src.Queue(ctx, h.now())
	if err != nil {
		// The ledger's figures still help while the queue cannot be read.
		ov.Errors = append(ov.Errors, "queue: "+err.Error())
	}
	if q != nil {
		ov.Queue = q
	}
	if dflt {
		h.built, h.builtAt = ov, time.Now()
	}
	return ov, nil
}

// Overview is /api/overview: the report without its per-message list
// (the page shows figures; a user's messages come from /api/user), the
// live queue, and the advice for each failure's and deferral's reply.
type Overview struct {
	Report json.RawMessage   `json:"report"`
	Queue  []QueueDest       `json:"queue"`
	Advice map[string]string `json:"advice"`
	Errors []string          `json:"errors,omitempty"`
}

// UserView is /api/user: the report for one user, messages included.
type UserView struct {
	Report    json.RawMessage   `json:"report"`
	Advice    map[string]string `json:"advice"`
	Truncated bool              `json:"truncated"`
}

// replies is the part of a report's JSON the advice is made from.
type replies struct {
	Misses []struct {
		Reply string `json:"reply"`
	} `json:"misses"`
	Deferrals []struct {
		Reply string `json:"reply"`
	} `json:"deferrals"`
	Messages []struct {
		Required []struct {
			Reply string `json:"reply"`
		} `json:"required"`
	} `json:"messages"`
}

func adviceFor(raw []byte) map[string]string {
	var rs replies
	_ = json.Unmarshal(raw, &rs) // a report without these fields gets no advice
	m := map[string]string{}
	add := func(reply string) {
		if reply == "" {
			return
		}
		if a := Advice(reply); a != "" {
			m[reply] = a
		}
	}
	for _, x := range rs.Misses {
		add(x.Reply)
	}
	for _, x := range rs.Deferrals {
		add(x.Reply)
	}
	for _, x := range rs.Messages {
		for _, r := range x.Required {
			add(r.Reply)
		}
	}
	return m
}

func (h *handler) build(ctx context.Context, f ledger.Filter) ([]byte, error) {
	rep, err := h.src.Report(ctx, f, h.now())
	if err != nil {
		return nil, err
	}
	return json.Marshal(rep)
}

func (h *handler) report(w http.ResponseWriter, r *http.Request) {
	f, _, err := h.window(r)
	if err != nil {
		http.Error(w, "since: "+err.Error(), http.StatusBadRequest)
		return
	}
	raw, err := h.build(r.Context(), f)
	if err != nil {
		fail(w, "report", err)
		return
	}
	writeRaw(w, raw)
}

func (h *handler) overview(w http.ResponseWriter, r *http.Request) {
	f, dflt, err := h.window(r)
	if err != nil {
		http.Error(w, "since: "+err.Error(), http.StatusBadRequest)
		return
	}
	ov, err := h.cached(r.Context(), f, dflt)
	if err != nil {
		fail(w, "report", err)
		return
	}
	writeJSON(w, ov)
}

func (h *handler) user(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if q == "" || len(q) > 320 {
		http.Error(w, "q: an address or a local part, at most 320 characters", http.StatusBadRequest)
		return
	}
	select {
	case h.searches <- struct{}{}:
		defer func() { <-h.searches }()
	case <-r.Context().Done():
		return
	}
	f, _, err := h.window(r)
	if err != nil {
		http.Error(w, "since: "+err.Error(), http.StatusBadRequest)
		return
	}
	// No Limit: report.Build takes it before matching the user.
	f.User = q
	raw, err := h.build(r.Context(), f)
	if err != nil {
		fail(w, "report for "+q, err)
		return
	}
	raw, truncated := limitMessages(raw, h.userLimit)
	writeJSON(w, UserView{Report: raw, Advice: adviceFor(raw), Truncated: truncated})
}

func (h *handler) queue(w http.ResponseWriter, r *http.Request) {
	q, err := h.src.Queue(r.Context(), h.now())
	if err != nil {
		fail(w, "queue", err)
		return
	}
	if q == nil {
		q = []QueueDest{}
	}
	writeJSON(w, q)
}

// withoutMessages drops the report's per-message list: with a full
// ledger it is most of the bytes, and the overview does not show it.
func withoutMessages(raw []byte) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw
	}
	if _, ok := m["messages"]; !ok {
		return raw
	}
	m["messages"] = json.RawMessage("[]")
	out, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return out
}

// limitMessages keeps the newest n of the report's messages, newest
// first.
func limitMessages(raw []byte, n int) (json.RawMessage, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw, false
	}
	var msgs []json.RawMessage
	if json.Unmarshal(m["messages"], &msgs) != nil {
		return raw, false
	}
	type arrival struct {
		Arrival time.Time `json:"arrival"`
	}
	at := make([]time.Time, len(msgs))
	for i, x := range msgs {
		var a arrival
		_ = json.Unmarshal(x, &a)
		at[i] = a.Arrival
	}
	idx := make([]int, len(msgs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(i, j int) bool { return at[idx[i]].After(at[idx[j]]) })
	truncated := len(idx) > n
	if truncated {
		idx = idx[:n]
	}
	out := make([]json.RawMessage, len(idx))
	for i, k := range idx {
		out[i] = msgs[k]
	}
	m["messages"], _ = json.Marshal(out)
	b, err := json.Marshal(m)
	if err != nil {
		return raw, false
	}
	return b, truncated
}

var lastErr struct {
	sync.Mutex
	msg string
}

func fail(w http.ResponseWriter, what string, err error) {
	// The same error every few seconds from each open page would flood
	// the log: logged when it changes.
	msg := what + ": " + err.Error()
	lastErr.Lock()
	if lastErr.msg != msg {
		lastErr.msg = msg
		log.Printf("dashboard: %s", msg)
	}
	lastErr.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, what+": "+err.Error(), http.StatusServiceUnavailable)
}

func writeJSON(w http.ResponseWriter, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		fail(w, "encoding", err)
		return
	}
	writeRaw(w, buf.Bytes())
}

func writeRaw(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}
