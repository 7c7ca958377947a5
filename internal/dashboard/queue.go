package dashboard

import (
	"sort"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/queue"
)

// QueueDest is the live queue's figures for one destination (a
// recipient's domain): recipients not yet delivered, the messages they
// belong to, and the oldest of those messages.
type QueueDest struct {
	Destination string    `json:"destination"`
	Recipients  int       `json:"recipients"`
	Messages    int       `json:"messages"`
	Deferred    int       `json:"deferred"` // recipients tried at least once
	Oldest      time.Time `json:"oldest,omitzero"`
	OldestAge   float64   `json:"oldest_age_seconds"`
}

// QueueByDestination groups the queue's undelivered recipients by
// domain, the most recipients first.
func QueueByDestination(list []queue.Info, now time.Time) []QueueDest {
	by := map[string]*QueueDest{}
	for _, m := range list {
		seen := map[string]bool{}
		for _, r := range m.Rcpts {
			if r.Status != "pending" && r.Status != "deferred" {
				continue
			}
			d := domain(r.Addr)
			q := by[d]
			if q == nil {
				q = &QueueDest{Destination: d}
				by[d] = q
			}
			q.Recipients++
			if r.Status == "deferred" {
				q.Deferred++
			}
			if !seen[d] {
				seen[d] = true
				q.Messages++
			}
			if q.Oldest.IsZero() || m.Arrival.Before(q.Oldest) {
				q.Oldest = m.Arrival
			}
		}
	}
	out := make([]QueueDest, 0, len(by))
	for _, q := range by {
		if !q.Oldest.IsZero() {
			q.OldestAge = max(0, now.Sub(q.Oldest).Seconds())
		}
		out = append(out, *q)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Recipients != out[j].Recipients {
			return out[i].Recipients > out[j].Recipients
		}
		return out[i].Destination < out[j].Destination
	})
	return out
}

func domain(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return "(local)"
}
