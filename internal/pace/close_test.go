package pace

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/provider"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/ratelimit"
)

// Close with deliveries waiting for the site's only slot: those that
// never went out give back their mailbox's place and their site slot.
func TestCloseGivesBackPlaces(t *testing.T) {
	for _, rl := range []int{1, 5} {
		l := Limits{Concurrency: 1, RecipientLimit: rl, RecipientRate: []ratelimit.Window{{N: 1, Per: time.Hour}}}
		p := New(Options{
			Transport: func(string) (Transport, bool) {
				return Transport{Profile: "google", SMTP: true, Limits: l, Explicit: Concurrency | RecipientLimit | RecipientRate}, true
			},
			Site: func(ctx context.Context, transport, nexthop string) provider.Site {
				return provider.Site{Provider: "google", Key: "google"}
			},
		})
		o := queue.Options{
			Dir:        t.TempDir(),
			MinBackoff: time.Hour, MaxBackoff: time.Hour,
			Pacer: p,
			Route: func(ctx context.Context, rcpt string) (envelope.Hop, error) {
				return envelope.Hop{Transport: "smtp", Nexthop: "students.example"}, nil
			},
			Deliver: func(ctx context.Context, m *queue.Message, hop envelope.Hop, rcpts []int) []queue.Outcome {
				<-ctx.Done()
				out := make([]queue.Outcome, len(rcpts))
				for k := range out {
					out[k].Err = ctx.Err()
				}
				return out
			},
		}
		q, err := queue.Open(o)
		if err != nil {
			t.Fatal(err)
		}
		go q.Run()
		for i := 0; i < 4; i++ {
			e := &envelope.Envelope{From: "a@example.org", Rcpts: []envelope.Rcpt{{Addr: fmt.Sprintf("u%d@students.example", i)}}}
			if err := q.Enqueue(context.Background(), q.NewID(), e, strings.NewReader("Subject: s\r\n\r\nx\r\n")); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		q.Close(ctx)
		cancel()
		p.mu.Lock()
		if len(p.busy) != 0 {
			t.Errorf("rl %d: site slots left: %v", rl, p.busy)
		}
		p.mu.Unlock()
		// the three waiting ones never reached the remote: their mailboxes are free
		free := 0
		for i := 0; i < 4; i++ {
			m := msg(fmt.Sprintf("u%d@students.example", i))
			a := p.Admit(context.Background(), p.Plan(context.Background(), envelope.Hop{Transport: "smtp", Nexthop: "students.example"}), m, []int{0})
			free += len(a.Now)
			if a.Done != nil {
				a.Done(nil)
			}
		}
		if free != 3 {
			t.Errorf("rl %d: %d of 4 mailboxes free after Close; want 3 (one delivery was under way)", rl, free)
		}
	}
}
