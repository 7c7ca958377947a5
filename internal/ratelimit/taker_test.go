package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A Token from NewToken is settled once, by Done or Cancel, whichever
// comes first, however many goroutines race to do it.
func TestNewTokenOnce(t *testing.T) {
	for i := 0; i < 100; i++ {
		var dones, cancels atomic.Int32
		var end time.Time
		tk := NewToken(func(e time.Time, reached bool) {
			if reached {
				dones.Add(1)
				end = e
			} else {
				cancels.Add(1)
			}
		})
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if g%2 == 0 {
					tk.Done(t0)
				} else {
					tk.Cancel()
				}
			}()
		}
		wg.Wait()
		if n := dones.Load() + cancels.Load(); n != 1 {
			t.Fatalf("settled %d times", n)
		}
		if dones.Load() == 1 && !end.Equal(t0) {
			t.Fatalf("Done passed %v, want %v", end, t0)
		}
	}
	var _ Taker = New(nil)
}
