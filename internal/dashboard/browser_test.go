package dashboard

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/dashboard/browsertest"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/report"
)

func reportOf(t *testing.T, url string) *report.Report {
	t.Helper()
	_, body := get(t, url+"/api/report")
	var rep report.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("%s/api/report: %v", url, err)
	}
	return &rep
}

func checkFigures(t *testing.T, b *browsertest.Browser, rep *report.Report) {
	t.Helper()
	if err := b.CheckFigures(rep); err != nil {
		t.Error(err)
	}
}

func noErrors(t *testing.T, b *browsertest.Browser) {
	t.Helper()
	if errs := b.Errors(); len(errs) > 0 {
		t.Errorf("the page logged %d errors:\n%s", len(errs), strings.Join(errs, "\n"))
	}
}

// TestBrowser opens the dashboard in Chromium over the seed scenario
// (one copy refused by the provider, copies pending while the relay is
// down) and checks that it shows the report's figures, updates by
// itself when a message arrives, shows a user's chain through the
// relay, keeps HTML from the ledger as text, and logs no error.
func TestBrowser(t *testing.T) {
	b := browsertest.Start(t)
	s := newScenario(60, time.Now())
	srv := serve(t, s.source())
	if err := b.Open(srv.URL+"/?refresh=0.3", time.Minute); err != nil {
		t.Fatal(err)
	}
	rep := reportOf(t, srv.URL)
	if rep.Summary.Copies.Failed != 1 || rep.Summary.Copies.Pending == 0 {
		t.Fatalf("scenario: copies %+v, want 1 failed and some pending", rep.Summary.Copies)
	}
	checkFigures(t, b, rep)

	// The failure, its advice, the deferral and the queue are on the page.
	text, err := b.Text("main")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"550-5.1.1 The email account that you tried to reach does not exist. <script>alert(2)</script> - gsmtp",
		"create it at the provider",
		"Connection refused",
		"The next hop is down",
		relay,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the page does not show %q", want)
		}
	}
	charts, err := browsertest.Eval[int](b, 10*time.Second, `document.querySelectorAll('#charts figure svg rect').length`)
	if err != nil || charts == 0 {
		t.Errorf("no bars in the charts (%d, %v)", charts, err)
	}

	// A new message: the page follows without being reloaded.
	s.add(time.Now())
	rep2 := reportOf(t, srv.URL)
	if rep2.Summary.Accepted != rep.Summary.Accepted+1 {
		t.Fatalf("accepted %d after adding one to %d", rep2.Summary.Accepted, rep.Summary.Accepted)
	}
	if err := b.WaitFigure("accepted", strconv.Itoa(rep2.Summary.Accepted), 30*time.Second); err != nil {
		t.Fatal(err)
	}
	checkFigures(t, b, rep2)

	// A gap in the ledger: the figure is flagged incomplete.
	s.prim.AddGap(ledger.Gap{Node: primary, Since: time.Now().Add(-time.Hour), Until: time.Now().Add(-50 * time.Minute), Reason: "ledger.db: no space left on device"})
	deadline := time.Now().Add(30 * time.Second)
	var banner string
	for time.Now().Before(deadline) && !strings.Contains(banner, "no space left") {
		time.Sleep(200 * time.Millisecond)
		banner, _ = browsertest.Eval[string](b, 10*time.Second, `(e => e.hidden ? "" : e.textContent)(document.getElementById('incomplete'))`)
	}
	if !strings.Contains(banner, "incomplete") || !strings.Contains(banner, "no space left on device") {
		t.Errorf("after a gap, the banner says %q", banner)
	}

	// One user's messages, with the copy's chain to the provider's reply;
	// the sender with HTML in it is shown as text, not made an element.
	err = b.Do(30*time.Second,
		browsertest.SetValue("#user", "user8"),
		browsertest.Submit("#user-form"),
	)
	if err != nil {
		t.Fatal(err)
	}
	var results string
	deadline = time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		results, _ = b.Text("#user-results")
		if strings.Contains(results, "gsmtp") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, want := range []string{"user8@" + relay, "queued as R", "- gsmtp", `<img src=x onerror=alert(1)>"@evil.example`} {
		if !strings.Contains(results, want) {
			t.Errorf("user8's messages do not show %q:\n%s", want, results)
		}
	}
	injected, err := browsertest.Eval[int](b, 10*time.Second, `document.querySelectorAll('main img, main script').length`)
	if err != nil || injected != 0 {
		t.Errorf("%d img/script elements made from the ledger's text (%v)", injected, err)
	}
	noErrors(t, b)
}

// TestScreenshot writes the README's picture, with a few hundred
// messages, when MAILTEE_DASHBOARD_PNG names the file.
func TestScreenshot(t *testing.T) {
	out := os.Getenv("MAILTEE_DASHBOARD_PNG")
	if out == "" {
		t.Skip("MAILTEE_DASHBOARD_PNG not set")
	}
	b := browsertest.Start(t)
	if w, _ := strconv.Atoi(os.Getenv("MAILTEE_DASHBOARD_WIDTH")); w > 0 {
		if err := b.Do(10*time.Second, browsertest.Viewport(int64(w), 600)); err != nil {
			t.Fatal(err)
		}
	}
	s := newScenario(300, time.Now())
	srv := serve(t, s.source())
	if err := b.Open(srv.URL+"/?refresh=60&user=user13", time.Minute); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the user search's answer
	if err := b.Screenshot(out); err != nil {
		t.Fatal(err)
	}
	noErrors(t, b)
}
