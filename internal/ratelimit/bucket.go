package ratelimit

import (
	"context"
	"io"
	"sync"
	"time"
)

// Bucket caps the bytes per second that all its writers together send
// (TRANSPORT_destination_bandwidth_limit): a token bucket that refills
// at the rate and holds one second's worth, so that after an idle
// second a message may go out at full speed for up to a second, and
// over any longer span the average stays at or below the rate.
//
// Writers reserve before they write, as x/time/rate's reservations:
// the bucket may go into debt, and a writer sleeps until the debt it
// joined is paid. So concurrent writers are served in the order they
// asked, and none waits for more than its own share.
type Bucket struct {
	rate  float64 // bytes per second
	burst int64   // the most the bucket holds
	chunk int     // the most one reservation takes

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// maxChunk splits writes so that writers sharing a bucket interleave
// finely instead of taking turns a second at a time.
const maxChunk = 64 << 10

// NewBucket returns a Bucket for bytesPerSec; 0 or less means no limit
// (a nil *Bucket, whose Writer returns w itself).
func NewBucket(bytesPerSec int64) *Bucket {
	if bytesPerSec <= 0 {
		return nil
	}
	return &Bucket{
		rate:   float64(bytesPerSec),
		burst:  bytesPerSec,
		chunk:  int(min(bytesPerSec, maxChunk)),
		tokens: float64(bytesPerSec),
	}
}

// Writer returns an io.Writer that writes through w at the Bucket's
// pace. A write larger than the burst is split; when ctx ends during a
// sleep, Write returns what it wrote and ctx.Err().
func (b *Bucket) Writer(ctx context.Context, w io.Writer) io.Writer {
	if b == nil {
		return w
	}
	return &bucketWriter{b: b, ctx: ctx, w: w}
}

type bucketWriter struct {
	b   *Bucket
	ctx context.Context
	w   io.Writer
}

func (bw *bucketWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if err := bw.ctx.Err(); err != nil {
			return written, err
		}
		n := min(len(p), bw.b.chunk)
		if wait := bw.b.reserve(n, time.Now()); wait > 0 {
			if err := sleepCtx(bw.ctx, wait); err != nil {
				bw.b.refund(n)
				return written, err
			}
		}
		k, err := bw.w.Write(p[:n])
		written += k
		if err != nil {
			bw.b.refund(n - k)
			return written, err
		}
		if k < n {
			bw.b.refund(n - k)
			return written, io.ErrShortWrite
		}
		p = p[n:]
	}
	return written, nil
}

// reserve takes n bytes' worth from the bucket at now and says how
// long to wait before sending them.
func (b *Bucket) reserve(n int, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(float64(b.burst), b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	if now.After(b.last) {
		b.last = now
	}
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// refund gives back what a writer reserved and did not send.
func (b *Bucket) refund(n int) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = min(float64(b.burst), b.tokens+float64(n))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Full says whether b holds its whole burst at now: nothing sent for a
// second or more, so that a new Bucket would behave as b does and b may
// be forgotten.
func (b *Bucket) Full(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.tokens
	if !b.last.IsZero() && now.After(b.last) {
		t += now.Sub(b.last).Seconds() * b.rate
	}
	return t >= float64(b.burst)
}
