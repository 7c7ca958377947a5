package maillog

import (
	"io"
	"sync"
	"time"
)

// Buffered collects log lines and writes them in batches: at most
// FlushDelay after the first unwritten line, or as soon as MaxBuffered
// bytes wait. Under load one write(2) then carries many lines instead of
// one each; a crash loses at most FlushDelay of log, never mail (the
// queue is what is durable, as with Postfix's asynchronous syslog).
type Buffered struct {
	w     io.Writer
	delay time.Duration
	max   int

	mu    sync.Mutex
	buf   []byte
	timer *time.Timer
	err   error // the last write error, reported by Flush
}

// Defaults of NewBuffered.
const (
	FlushDelay  = 100 * time.Millisecond
	MaxBuffered = 64 << 10
)

// NewBuffered returns a Buffered writing to w.
func NewBuffered(w io.Writer) *Buffered {
	return &Buffered{w: w, delay: FlushDelay, max: MaxBuffered}
}

// Write queues p, which must be whole lines (Handler writes one line per
// call), so that a batch never splits a line.
func (b *Buffered) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) >= b.max {
		b.flushLocked()
	} else if b.timer == nil {
		b.timer = time.AfterFunc(b.delay, func() { b.Flush() })
	}
	return len(p), nil
}

// Flush writes what waits now.
func (b *Buffered) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	return b.err
}

func (b *Buffered) flushLocked() {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if len(b.buf) == 0 {
		return
	}
	if _, err := b.w.Write(b.buf); err != nil {
		b.err = err
	}
	if cap(b.buf) > 4*b.max {
		b.buf = nil // a burst is over: give back its memory
	} else {
		b.buf = b.buf[:0]
	}
}
