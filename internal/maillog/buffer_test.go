package maillog

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuf struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writes++
	return l.b.Write(p)
}

func (l *lockedBuf) String() (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String(), l.writes
}

func TestBufferedBatchesLines(t *testing.T) {
	var out lockedBuf
	b := NewBuffered(&out)
	b.delay = time.Hour // only Flush or the size limit write
	for i := 0; i < 100; i++ {
		b.Write([]byte("line\n"))
	}
	if s, n := out.String(); s != "" || n != 0 {
		t.Fatalf("written before the delay: %d writes", n)
	}
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	s, n := out.String()
	if n != 1 || s != strings.Repeat("line\n", 100) {
		t.Fatalf("got %d writes of %d bytes; want 1 of 500", n, len(s))
	}
}

func TestBufferedSizeLimit(t *testing.T) {
	var out lockedBuf
	b := NewBuffered(&out)
	b.delay, b.max = time.Hour, 10
	b.Write([]byte("0123456789\n"))
	if s, _ := out.String(); s != "0123456789\n" {
		t.Fatalf("a full buffer was not written: %q", s)
	}
}

func TestBufferedDelay(t *testing.T) {
	var out lockedBuf
	b := NewBuffered(&out)
	b.delay = 10 * time.Millisecond
	b.Write([]byte("a\n"))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if s, _ := out.String(); s == "a\n" {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("a line waited longer than its delay")
}
