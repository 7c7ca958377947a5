package ratelimit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBucketReserve: the token arithmetic on a fake clock. The bucket
// starts full (one second's worth), refills at the rate, and a writer
// that drives it into debt waits until the debt is paid.
func TestBucketReserve(t *testing.T) {
	b := NewBucket(1000)
	for _, c := range []struct {
		n    int
		at   time.Duration
		want time.Duration
	}{
		{600, 0, 0},
		{400, 0, 0},                           // the burst is spent
		{500, 0, 500 * time.Millisecond},      // in debt by 500
		{500, 0, time.Second},                 // behind the first debtor
		{100, 3 * s, 0},                       // 3s later: debt paid, full again (not 2000)
		{1000, 3 * s, 100 * time.Millisecond}, // the burst is 1000, not more
	} {
		if got := b.reserve(c.n, at(c.at)); got != c.want {
			t.Fatalf("reserve(%d) at %v = %v, want %v", c.n, c.at, got, c.want)
		}
	}
}

type countWriter struct{ n atomic.Int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n.Add(int64(len(p))); return len(p), nil }

// TestBucketRate: two writers sharing a bucket send 3 seconds' worth:
// one second from the full bucket, then two at the rate. A lower bound
// only; the machine may be slower.
func TestBucketRate(t *testing.T) {
	const rate = 100_000
	b := NewBucket(rate)
	var out countWriter
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := b.Writer(context.Background(), &out)
			buf := make([]byte, 3*rate/2/5)
			for i := 0; i < 5; i++ {
				if n, err := w.Write(buf); n != len(buf) || err != nil {
					t.Errorf("Write = %d, %v", n, err)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	t.Logf("%d bytes at %d/s in %v", out.n.Load(), rate, el)
	if out.n.Load() != 3*rate {
		t.Errorf("%d bytes written, want %d", out.n.Load(), 3*rate)
	}
	if el < 1900*time.Millisecond {
		t.Errorf("3s worth took %v, want at least ~2s", el)
	}
}

// TestBucketLargeWrite: one write far larger than the burst is split
// and paced.
func TestBucketLargeWrite(t *testing.T) {
	b := NewBucket(50_000)
	var out bytes.Buffer
	start := time.Now()
	data := bytes.Repeat([]byte("x"), 100_000)
	n, err := b.Writer(context.Background(), &out).Write(data)
	if n != len(data) || err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("Write = %d, %v; %d bytes arrived", n, err, out.Len())
	}
	if el := time.Since(start); el < 900*time.Millisecond {
		t.Errorf("2s worth took %v, want at least ~1s", el)
	}
}

func TestBucketContext(t *testing.T) {
	b := NewBucket(10)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	var out bytes.Buffer
	start := time.Now()
	n, err := b.Writer(ctx, &out).Write(make([]byte, 100))
	if !errors.Is(err, context.DeadlineExceeded) || n != 10 || out.Len() != 10 {
		t.Fatalf("Write = %d, %v (%d arrived); want the burst, 10, and the deadline", n, err, out.Len())
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("the deadline ended the sleep after %v", el)
	}
	// What was reserved and not sent went back to the bucket: after 1s
	// it holds the whole burst again.
	if wait := b.reserve(10, time.Now().Add(time.Second)); wait != 0 {
		t.Errorf("after a cancelled write and 1s, reserve(10) waits %v", wait)
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.after {
		return f.after, io.ErrClosedPipe
	}
	f.after -= len(p)
	return len(p), nil
}

func TestBucketWriteError(t *testing.T) {
	w := NewBucket(1<<20).Writer(context.Background(), &failWriter{after: 70_000})
	n, err := w.Write(make([]byte, 200_000))
	if n != 70_000 || !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Write = %d, %v; want 70000, the writer's error", n, err)
	}
}

func TestBucketNone(t *testing.T) {
	var out bytes.Buffer
	for _, rate := range []int64{0, -1} {
		if w := NewBucket(rate).Writer(context.Background(), &out); w != io.Writer(&out) {
			t.Errorf("NewBucket(%d).Writer wraps w; want w itself", rate)
		}
	}
}

// Full: a bucket is as good as new once it has refilled.
func TestBucketFull(t *testing.T) {
	b := NewBucket(1000)
	now := time.Unix(1e9, 0)
	if !b.Full(now) {
		t.Error("a new bucket is not full")
	}
	b.reserve(500, now)
	if b.Full(now.Add(400 * time.Millisecond)) {
		t.Error("full 0.4 s after half its burst went")
	}
	if !b.Full(now.Add(500 * time.Millisecond)) {
		t.Error("not full once refilled")
	}
}
