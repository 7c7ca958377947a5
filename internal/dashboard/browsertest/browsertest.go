// Package browsertest drives Debian's Chromium, headless, with chromedp,
// for tests of the dashboard: it opens a page, reads the figures the
// page marks with data-figure attributes, waits for them to change, and
// collects every console error, uncaught exception and browser log
// error (a CSP violation, a failed asset) so that a test can require
// none.
//
// Chromium runs with a fresh profile and without its background
// traffic (updates, sync, safe browsing): the test hosts have no
// internet, and a browser trying it is slow and noisy. As root (CI) it
// needs --no-sandbox.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/mailtee/mailtee/internal/report"
)

// Browser is one headless Chromium with one tab.
type Browser struct {
	ctx    context.Context
	cancel context.CancelFunc

	mu   sync.Mutex
	errs []string
}

// Path finds Chromium: $MAILTEE_CHROMIUM, else chromium or
// chromium-browser on $PATH. The error says how to install it.
func Path() (string, error) {
	if p := os.Getenv("MAILTEE_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium on PATH: install it (apt-get install -y chromium), name it in MAILTEE_CHROMIUM, or set MAILTEE_NO_BROWSER=1 to skip the browser tests")
}

// Start starts Chromium for t and stops it when t ends. Without
// Chromium t fails, saying how to install it, unless
// MAILTEE_NO_BROWSER=1, when it skips: a browser test that skips
// silently would let a broken page through CI.
func Start(t testing.TB) *Browser {
	t.Helper()
	if os.Getenv("MAILTEE_NO_BROWSER") == "1" {
		t.Skip("MAILTEE_NO_BROWSER=1: browser test skipped")
	}
	path, err := Path()
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(path, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// New starts Chromium at path with a fresh profile in dir (which the
// caller removes).
func New(path, dir string) (*Browser, error) {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.NoSandbox, // as root (CI) Chromium refuses to start with its sandbox
		chromedp.DisableGPU,
		chromedp.UserDataDir(dir),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("safebrowsing-disable-auto-update", true),
		chromedp.Flag("disable-client-side-phishing-detection", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider"),
		chromedp.Flag("password-store", "basic"),
		chromedp.WindowSize(1280, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	b := &Browser{}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithListener(b.listen))
	b.ctx, b.cancel = ctx, func() { cancel(); acancel() }
	// The first Do starts the browser, which lives as long as the
	// context of that Do: so not a context with a timeout, and the
	// timeout (a minute covers a cold start on a loaded 2-core machine)
	// is kept here.
	done := make(chan error, 1)
	go func() { done <- chromedp.Do(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			b.Close()
			return nil, fmt.Errorf("starting %s: %w", path, err)
		}
	case <-time.After(time.Minute):
		b.Close()
		return nil, fmt.Errorf("starting %s: no answer after a minute", path)
	}
	return b, nil
}

func (b *Browser) listen(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var parts []string
		for _, a := range ev.Args {
			if a.Value != nil {
				parts = append(parts, string(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		msg = "console." + string(ev.Type) + ": " + strings.Join(parts, " ")
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg = fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber+1, d.Text)
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
	case *log.EventEntryAdded:
		if ev.Entry.Level != log.EntryLevelError {
			return
		}
		msg = fmt.Sprintf("log %s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
	default:
		return
	}
	b.mu.Lock()
	// A page that fails at each refresh would fill memory.
	if len(b.errs) < 100 {
		b.errs = append(b.errs, msg)
	}
	b.mu.Unlock()
}

// Close stops the browser.
func (b *Browser) Close() { b.cancel() }

// Context is the tab's context, for chromedp.Run with actions of one's own.
func (b *Browser) Context() context.Context { return b.ctx }

// Errors returns the console errors, exceptions and log errors seen so far.
func (b *Browser) Errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...)
}

// Do runs actions in the tab, bounded by timeout.
func (b *Browser) Do(timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	return chromedp.Do(ctx, actions...)
}

// Eval evaluates a JavaScript expression in the page and decodes its
// value into T.
func Eval[T any](b *Browser, timeout time.Duration, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr))
}

// Open loads url and waits until the page has drawn its figures (the
// body's data-state is "ready", which the dashboard sets after its first
// refresh); it gives up at the first error in the page.
func (b *Browser) Open(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	if err := b.Do(timeout, chromedp.Navigate(url)); err != nil {
		return fmt.Errorf("opening %s: %w", url, err)
	}
	for {
		state, err := Eval[string](b, 10*time.Second, `document.body ? (document.body.dataset.state || "") : ""`)
		if err == nil && state == "ready" {
			return nil
		}
		if errs := b.Errors(); len(errs) > 0 {
			return fmt.Errorf("opening %s: %d errors in the page, the first: %s", url, len(errs), errs[0])
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("opening %s: not ready after %v (state %q, %v)", url, timeout, state, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Figures returns the text of every element with a data-figure
// attribute, by the attribute's value.
func (b *Browser) Figures() (map[string]string, error) {
	return Eval[map[string]string](b, 30*time.Second, `(() => {
		const m = {};
		for (const e of document.querySelectorAll('[data-figure]')) m[e.dataset.figure] = e.textContent.trim();
		return m;
	})()`)
}

// WaitFigure waits until the figure name shows want, polling, up to
// timeout; the error gives the last value seen.
func (b *Browser) WaitFigure(name, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		m, err := b.Figures()
		if err != nil {
			return err
		}
		last = m[name]
		if last == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("figure %q is %q after %v, want %q", name, last, timeout, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Text returns the text content of the first element sel matches.
func (b *Browser) Text(sel string) (string, error) {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
}

// Screenshot writes a PNG of the whole page to path.
func (b *Browser) Screenshot(path string) error {
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return err
	}
	return os.WriteFile(path, buf, 0o644)
}

// SetValue sets the value of the input sel matches, as typing would.
func SetValue(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.SetValue(chromedp.CSS(sel), value)
}

// Submit submits the form sel matches (its submit event runs).
func Submit(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.Submit(chromedp.CSS(sel))
}

// Viewport sets the window's size in CSS pixels (a phone, or a
// terminal-sized window).
func Viewport(width, height int64) chromedp.Action[chromedp.Void] {
	return chromedp.EmulateViewport(width, height)
}

// Figures is what the dashboard must show for rep, by data-figure name:
// counts as decimal integers, the ratio as a percentage with one
// decimal, rounded down (never 100.0% while a delivery is missing).
func Figures(rep *report.Report) map[string]string {
	rc, s := rep.Reconciliation, rep.Summary
	pct := math.Floor(rc.Ratio*1000) / 10
	if rc.Delivered == rc.Required {
		pct = 100
	}
	itoa := strconv.Itoa
	return map[string]string{
		"ratio":              fmt.Sprintf("%.1f%%", pct),
		"delivered":          itoa(rc.Delivered),
		"required":           itoa(rc.Required),
		"misses":             itoa(len(rep.Misses)),
		"deliveries-pending": itoa(s.Deliveries.Pending),
		"deliveries-failed":  itoa(s.Deliveries.Failed),
		"accepted":           itoa(s.Accepted),
		"messages-delivered": itoa(s.Messages.Delivered),
		"messages-pending":   itoa(s.Messages.Pending),
		"messages-failed":    itoa(s.Messages.Failed),
		"copies-delivered":   itoa(s.Copies.Delivered),
		"copies-pending":     itoa(s.Copies.Pending),
		"copies-failed":      itoa(s.Copies.Failed),
	}
}

// CheckFigures compares the figures the page shows now with rep's
// (Figures); the error lists every difference.
func (b *Browser) CheckFigures(rep *report.Report) error {
	got, err := b.Figures()
	if err != nil {
		return err
	}
	want := Figures(rep)
	var diffs []string
	for _, name := range slices.Sorted(maps.Keys(want)) {
		if got[name] != want[name] {
			diffs = append(diffs, fmt.Sprintf("%s: the page shows %q, the report says %q", name, got[name], want[name]))
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("the dashboard differs from the report:\n%s", strings.Join(diffs, "\n"))
	}
	return nil
}
