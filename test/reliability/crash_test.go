package reliability

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtee/mailtee/internal/ledger"
)

// destConcurrency is Postfix's default_destination_concurrency_limit, which
// the crash tests leave at its default: at most this many deliveries to the
// sink are in flight when mailtee is killed.
const destConcurrency = 20

// crashRun is one run of the kill loop and what it observed.
type crashRun struct {
	messages  int // messages to get acknowledged
	senders   int
	minKills  int // kill at least this often...
	maxKills  int // ...and at most this often
	killEvery [2]time.Duration

	kills    int
	attempts int64
	acked    map[string]bool // recipient of every attempt that got 250
	rejected []string        // 5xx answers: never expected
	failed   []string        // messages given up on
	elapsed  time.Duration
}

// attemptRcpt is the recipient of one submission attempt of message i: each
// attempt is a distinct address, so a retry after a connection cut between
// DATA and its reply (outcome unknown to the client) can never be taken
// for a duplicate delivery.
func attemptRcpt(i, attempt int) string {
	return fmt.Sprintf("m%06d.a%d@far.example", i, attempt)
}

// TestKillLoopLosesNothing: concurrent senders submit numbered messages
// while mailtee is killed with SIGKILL at random moments and restarted on
// the same queue. Every message that got 250 after DATA must reach the
// next hop; duplicates are allowed only for deliveries in flight at a
// kill (at most destConcurrency per kill).
//
// Normal mode: 1500 messages, 20 to 60 kills (about 10 s idle, 30 s on a
// busy machine). MAILTEE_SOAK=1: 20000 messages, 200 to 400 kills (3 to 4
// minutes); run it with -timeout 30m.
var journalMoved = regexp.MustCompile(`queue journal: (\d+) messages of the previous run moved`)

func TestKillLoopLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("kill loop")
	}
	r := &crashRun{messages: 1500, senders: 8, minKills: 20, maxKills: 60,
		killEvery: [2]time.Duration{100 * time.Millisecond, 600 * time.Millisecond}}
	drainTimeout := 120 * time.Second
	if os.Getenv("MAILTEE_SOAK") == "1" {
		r.messages, r.minKills, r.maxKills = 20000, 200, 400
		drainTimeout = 10 * time.Minute
	}
	runKillLoop(t, r, drainTimeout)
}

func runKillLoop(t *testing.T, r *crashRun, drainTimeout time.Duration) {
	sk := newSink(t, "", nil)
	in := newInstance(t, fmt.Sprintf("transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }\n", sk.Port()), nil)
	in.Start()
	begin := time.Now()
	// Nothing in this test may run unbounded: senders and killer give up
	// at this deadline and the test fails.
	deadline := begin.Add(drainTimeout + 5*time.Minute)

	var (
		mu       sync.Mutex
		next     atomic.Int64
		sendDone = make(chan struct{})
		wg       sync.WaitGroup
	)
	r.acked = map[string]bool{}
	for w := 0; w < r.senders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > r.messages {
					return
				}
				for attempt := 1; ; attempt++ {
					if attempt > 2000 || time.Now().After(deadline) {
						mu.Lock()
						r.failed = append(r.failed, fmt.Sprintf("message %d: gave up after %d attempts", i, attempt-1))
						mu.Unlock()
						break
					}
					rcpt := attemptRcpt(i, attempt)
					atomic.AddInt64(&r.attempts, 1)
					err := sendTimeout(in.Addr(), "s@test.example", []string{rcpt}, testMessage(rcpt), 30*time.Second)
					if err == nil {
						mu.Lock()
						r.acked[rcpt] = true
						mu.Unlock()
						break
					}
					var se *smtp.SMTPError
					if errors.As(err, &se) && se.Code >= 500 {
						mu.Lock()
						r.rejected = append(r.rejected, fmt.Sprintf("%s: %v", rcpt, err))
						mu.Unlock()
						break
					}
					// Connection refused or cut, or a 4xx: the server is
					// (re)starting. Try again as a new attempt.
					time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond)
				}
			}
		}()
	}
	go func() { wg.Wait(); close(sendDone) }()

	// The killer: SIGKILL at random moments, restart on the same queue at
	// once. It keeps going after the senders are done (killing deliveries
	// in flight) until minKills, and stops at maxKills even if they are not.
	var killerErr error
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		for r.kills < r.maxKills && time.Now().Before(deadline) {
			lo, hi := r.killEvery[0], r.killEvery[1]
			time.Sleep(lo + rand.N(hi-lo))
			select {
			case <-sendDone:
				if r.kills >= r.minKills {
					return
				}
			default:
			}
			if err := in.KillErr(); err != nil {
				killerErr = err
				return
			}
			r.kills++
			if err := in.StartErr(); err != nil {
				killerErr = fmt.Errorf("restart after kill %d: %v", r.kills, err)
				return
			}
		}
	}()
	<-killerDone
	if killerErr != nil {
		in.KillErr()
		<-sendDone
		t.Fatalf("%v; log tail:\n%s", killerErr, tail(in.Log.String(), 60))
	}
	<-sendDone
	sendTime := time.Since(begin)
	if !in.Running() {
		in.Start()
	}

	mu.Lock()
	acked := r.acked
	mu.Unlock()
	// Drain: every acknowledged message seen at the sink and the queue
	// empty (no more deliveries, hence no more duplicates, can come).
	drainStart := time.Now()
	drained := false
	for time.Since(drainStart) < drainTimeout {
		if queueMessages(in) == 0 {
			missing := 0
			c := sk.Counts()
			for rc := range acked {
				if c[rc] == 0 {
					missing++
				}
			}
			if missing == 0 {
				drained = true
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.elapsed = time.Since(begin)

	counts := sk.Counts()
	var lost []string
	for rc := range acked {
		if counts[rc] == 0 {
			lost = append(lost, rc)
		}
	}
	sort.Strings(lost)
	dups, dupRcpts, unackedDelivered, strangers := 0, 0, 0, 0
	for rc, n := range counts {
		if n > 1 {
			dups += n - 1
			dupRcpts++
		}
		if !acked[rc] {
			if strings.HasPrefix(rc, "m") && strings.HasSuffix(rc, "@far.example") {
				unackedDelivered++
			} else {
				strangers++
			}
		}
	}
	corrupt, _ := os.ReadDir(in.corruptDir())

	// Messages a kill left in the queue's journal, moved out at restart.
	recovered := 0
	for _, m := range journalMoved.FindAllStringSubmatch(in.Log.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		recovered += n
	}
	t.Logf("kills=%d acknowledged=%d lost=%d duplicates=%d moved-out-of-the-journal-at-restart=%d", r.kills, len(acked), len(lost), dups, recovered)
	t.Logf("messages=%d senders=%d attempts=%d delivered-without-250=%d duplicated-recipients=%d corrupt-files=%d queue-left=%d send-time=%v runtime=%v",
		r.messages, r.senders, r.attempts, unackedDelivered, dupRcpts, len(corrupt), queueMessages(in), sendTime.Round(time.Millisecond), r.elapsed.Round(time.Millisecond))

	if len(r.failed) > 0 {
		t.Errorf("%d messages never acknowledged, e.g. %s", len(r.failed), r.failed[0])
	}
	if len(r.rejected) > 0 {
		t.Errorf("%d submissions rejected with 5xx, e.g. %s", len(r.rejected), r.rejected[0])
	}
	if r.kills < r.minKills {
		t.Errorf("only %d kills, want at least %d", r.kills, r.minKills)
	}
	if strangers > 0 {
		t.Errorf("%d unexpected recipients at the sink", strangers)
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged messages lost, e.g. %v", len(lost), lost[:min(len(lost), 10)])
		for _, rc := range lost[:min(len(lost), 3)] {
			t.Logf("log lines for %s:\n%s", rc, grepLines(in.Log.String(), rc))
		}
	}
	if !drained && len(lost) == 0 {
		t.Errorf("queue not drained after %v: %d messages left", drainTimeout, queueMessages(in))
	}
	if limit := r.kills * destConcurrency; dups > limit {
		t.Errorf("%d duplicate deliveries: more than %d kills x %d in flight can explain", dups, r.kills, destConcurrency)
	}
	if drained {
		checkLedger(t, in, acked)
	}
	if t.Failed() {
		t.Logf("log tail:\n%s", tail(in.Log.String(), 80))
	}
}

// checkLedger: the kills cost the ledger nothing either. The queue
// removes a message only once the ledger has its final state, so every
// acknowledged message is there, delivered, and no gap is recorded.
func checkLedger(t *testing.T, in *instance, acked map[string]bool) {
	t.Helper()
	in.Stop() // the last outcomes are written at a clean stop
	st, err := ledger.OpenReader(filepath.Join(in.Dir, "data", "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	msgs, err := st.Messages(context.Background(), ledger.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	sent := map[string]bool{}
	pending := 0
	for _, m := range msgs {
		for _, d := range m.Deliveries {
			switch {
			case d.Status == ledger.Sent:
				sent[d.Rcpt] = true
			case !d.Status.Final():
				pending++
			}
		}
	}
	var missing []string
	for rc := range acked {
		if !sent[rc] {
			missing = append(missing, rc)
		}
	}
	sort.Strings(missing)
	gaps, err := st.Gaps(context.Background(), time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ledger: %d messages, %d acknowledged recipients recorded sent, %d pending, %d gaps", len(msgs), len(acked)-len(missing), pending, len(gaps))
	if len(missing) > 0 {
		t.Errorf("%d acknowledged and delivered messages not recorded as sent in the ledger, e.g. %v", len(missing), missing[:min(len(missing), 5)])
	}
	if pending > 0 {
		t.Errorf("%d deliveries still pending in the ledger of an empty queue", pending)
	}
	if len(gaps) > 0 {
		t.Errorf("gaps recorded: %+v", gaps)
	}
}

// TestNoDuplicatesWithoutCrash is the control for the kill loop: the same
// load without any kill must deliver every message exactly once.
func TestNoDuplicatesWithoutCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("load")
	}
	sk := newSink(t, "", nil)
	in := newInstance(t, fmt.Sprintf("transport_maps = inline:{ far.example=smtp:[127.0.0.1]:%d }\n", sk.Port()), nil)
	in.Start()
	const n, senders = 1500, 8
	var next atomic.Int64
	var wg sync.WaitGroup
	var errs atomic.Int64
	var firstErr atomic.Value
	for w := 0; w < senders; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > n {
					return
				}
				rcpt := attemptRcpt(i, 1)
				if err := send(in.Addr(), "s@test.example", []string{rcpt}, testMessage(rcpt)); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %v", rcpt, err))
				}
			}
		}()
	}
	wg.Wait()
	if errs.Load() > 0 {
		t.Fatalf("%d submissions failed without any crash, e.g. %v", errs.Load(), firstErr.Load())
	}
	waitUntil(t, "the queue to drain", 120*time.Second, func() bool {
		return sk.Total() >= n && queueMessages(in) == 0
	})
	dups := 0
	var dupRcpts []string
	for rc, c := range sk.Counts() {
		if c > 1 {
			dups += c - 1
			dupRcpts = append(dupRcpts, rc)
		}
	}
	sort.Strings(dupRcpts)
	t.Logf("messages=%d delivered=%d duplicates=%d", n, sk.Total(), dups)
	if dups > 0 {
		t.Errorf("%d duplicate deliveries without any crash, e.g. %v", dups, dupRcpts[:min(len(dupRcpts), 5)])
		for _, rc := range dupRcpts[:min(len(dupRcpts), 2)] {
			t.Logf("log lines for %s:\n%s", rc, grepLines(in.Log.String(), rc))
		}
	}
	in.Stop()
}

// queueMessages counts message files in the spool (not state files, not
// submissions in progress).
func queueMessages(in *instance) int {
	n := 0
	for _, f := range in.queueFiles() {
		if !strings.HasSuffix(f, ".st") && !strings.HasPrefix(f, ".") {
			n++
		}
	}
	return n
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// grepLines returns the lines of s mentioning what, and the lines of the
// queue IDs those lines name.
func grepLines(s, what string) string {
	lines := strings.Split(s, "\n")
	ids := map[string]bool{}
	for _, l := range lines {
		if strings.Contains(l, what) {
			if id := queueIDOf(l); id != "" {
				ids[id] = true
			}
		}
	}
	var out []string
	for _, l := range lines {
		if strings.Contains(l, what) || ids[queueIDOf(l)] || strings.HasPrefix(l, "=== harness") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// queueIDOf extracts "ID" from a Postfix-shaped log line "... prog[pid]: ID: ...".
func queueIDOf(line string) string {
	_, rest, ok := strings.Cut(line, "]: ")
	if !ok {
		return ""
	}
	id, _, ok := strings.Cut(rest, ": ")
	if !ok || len(id) < 8 || strings.ContainsAny(id, " =") {
		return ""
	}
	return id
}
