package ratelimit

import (
	"fmt"
	"sort"
	"testing"
	"time"
)

// modelKey is the brute-force version of the rule: every event kept.
type modelKey struct {
	inflight int
	ends     []time.Duration
}

func (k *modelKey) count(now time.Duration, w Window) int {
	c := k.inflight
	for _, e := range k.ends {
		if e > now-w.Per {
			c++
		}
	}
	return c
}

// free: the earliest instant at or after now that w admits one more,
// with the in-flight attempts still in flight.
func (k *modelKey) free(now time.Duration, w Window) time.Duration {
	if k.count(now, w) < w.N {
		return now
	}
	if k.inflight >= w.N {
		return now + w.Per
	}
	ends := append([]time.Duration(nil), k.ends...)
	sort.Slice(ends, func(i, j int) bool { return ends[i] > ends[j] })
	// The (N-inflight)-th latest end must leave.
	return ends[w.N-k.inflight-1] + w.Per
}

// FuzzLimiter drives a Limiter and a brute-force model of the rule
// with the same operations: they must admit and refuse alike, and a
// refusal's retry time must not be before the rule can hold. It checks
// what the Limiter forgets to save memory (ends beyond the last N, old
// ends, idle keys) changes no decision.
func FuzzLimiter(f *testing.F) {
	f.Add([]byte{0x83, 1, 2, 3, 0x40, 0x81, 0xc2, 0, 0, 0, 0x10, 0x20})
	f.Add([]byte{0x05, 0x11, 0x90, 1, 0, 1, 0, 1, 0, 1, 0, 0, 10, 2, 100, 2, 5, 1, 0, 1, 0})
	f.Add([]byte("take take done cancel wait wait take take take take"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		// One to three windows from the first bytes: N 1..6, Per 0.25..8s.
		var windows []Window
		for len(ops) > 0 && len(windows) < 3 {
			b := ops[0]
			ops = ops[1:]
			windows = append(windows, Window{N: 1 + int(b%6), Per: time.Duration(1+(b/6)%32) * 250 * time.Millisecond})
			if b&0x80 != 0 {
				break
			}
		}
		l := New(windows)
		model := map[int]*modelKey{}
		type held struct {
			tk    *Token
			key   int
			start time.Duration
		}
		var tokens []held
		now := time.Duration(0)
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i], int(ops[i+1])
			key := int(op>>2) % 4
			switch op & 3 {
			case 0: // time passes: up to ~12.75s
				now += time.Duration(arg) * 50 * time.Millisecond
			case 1: // Take
				mk := model[key]
				if mk == nil {
					mk = &modelKey{}
					model[key] = mk
				}
				want := true
				var free time.Duration
				for _, w := range windows {
					if mk.count(now, w) >= w.N {
						want = false
					}
					free = max(free, mk.free(now, w))
				}
				tk, retry := l.Take(fmt.Sprint(key), at(now))
				if (tk != nil) != want {
					t.Fatalf("op %d: Take(%d) at %v admitted=%v, the rule says %v (model %+v)", i, key, now, tk != nil, want, *mk)
				}
				if tk == nil {
					if r := retry.Sub(t0); r < free || r <= now {
						t.Fatalf("op %d: Take(%d) at %v told to retry at %v, the rule holds no earlier than %v", i, key, now, r, free)
					}
					continue
				}
				mk.inflight++
				tokens = append(tokens, held{tk, key, now})
			case 2, 3: // Done (at now minus up to 2.55s) or Cancel
				if len(tokens) == 0 {
					continue
				}
				j := arg % len(tokens)
				h := tokens[j]
				tokens = append(tokens[:j], tokens[j+1:]...)
				mk := model[h.key]
				mk.inflight--
				if op&3 == 3 && arg&1 == 0 {
					h.tk.Cancel()
					h.tk.Cancel() // twice: no effect
					continue
				}
				end := now - time.Duration(arg)*10*time.Millisecond
				h.tk.Done(at(end))
				h.tk.Done(at(end)) // twice: no effect
				mk.ends = append(mk.ends, max(end, h.start))
			}
		}
	})
}
