package pace

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/provider"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/ratelimit"
)

// msgs are messages to 1000 mailboxes, so that the benchmark's rate of
// deliveries (millions a second) stays under windows' per-mailbox limit
// as the relay's 2,000 a second to one mailbox does.
func msgs() []*queue.Message {
	ms := make([]*queue.Message, 1000)
	for i := range ms {
		ms[i] = msg(fmt.Sprintf("rcpt%d@sink.example", i))
	}
	return ms
}

// BenchmarkPacerDelivery is what the pacer costs one delivery of one
// recipient to bench/compare.sh's relay next hop ([127.0.0.1]:port, the
// real MX rollup, which looks nothing up for a bracketed hop): Plan,
// Admit, Go and Done with a success, as the queue calls them. "default"
// is main.cf without pacing parameters; "windows" adds limits that never
// bind (the smtp transport's per-mailbox and per-site windows of
// compare.sh's relay with smtp_recipient_rate_limit = 100000/1s and
// smtp_destination_rate_limit = 1000000/1s); "parallel" runs 20 at once,
// as the relay's 20 concurrent deliveries.
func BenchmarkPacerDelivery(b *testing.B) {
	never := Limits{Concurrency: 20, RecipientLimit: 50,
		RecipientRate:   []ratelimit.Window{{N: 100000, Per: time.Second}},
		DestinationRate: []ratelimit.Window{{N: 1000000, Per: time.Second}}}
	for _, c := range []struct {
		name string
		lim  Limits
	}{{"default", base()}, {"windows", never}} {
		p := New(Options{
			Transport: func(name string) (Transport, bool) {
				return Transport{Profile: "auto", SMTP: true, Limits: c.lim}, name == "smtp"
			},
			Site: (&provider.Rollup{}).Site,
		})
		hop := envelope.Hop{Transport: "smtp", Nexthop: "[127.0.0.1]:25"}
		run := func(m *queue.Message) {
			ctx := context.Background()
			plan := p.Plan(ctx, hop)
			plan.Hop = hop
			adm := p.Admit(ctx, plan, m, []int{0})
			if len(adm.Now) != 1 {
				b.Fatalf("held back: %+v", adm.Later)
			}
			if adm.Go != nil && len(adm.Go()) != 0 {
				b.Fatal("held back once the slot is held")
			}
			adm.Done([]queue.Outcome{{}})
		}
		b.Run(c.name, func(b *testing.B) {
			ms := msgs()
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				run(ms[i%len(ms)])
			}
		})
		b.Run(c.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(10) // 20 goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				ms := msgs()
				for i := 0; pb.Next(); i++ {
					run(ms[i%len(ms)])
				}
			})
		})
	}
}
