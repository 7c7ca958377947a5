package ledger

import (
	"context"
	"sync"
	"time"
)

// Lazy is a Reader of the ledger at a path that opens it at its first
// use, and again after a failure: serve's dashboard and peers' endpoint
// read the ledger its Recorder writes, which may not exist yet (a
// data_directory made later, a disk that was full).
type Lazy struct {
	Path string

	mu sync.Mutex
	st *Store
}

func (l *Lazy) store() (*Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st != nil {
		return l.st, nil
	}
	st, err := OpenReader(l.Path)
	if err != nil {
		return nil, err
	}
	l.st = st
	return st, nil
}

// fail drops a store that failed, so that the next use opens it again
// (the file may have been set aside and replaced).
func (l *Lazy) fail(st *Store, err error) error {
	if err != nil {
		l.mu.Lock()
		if l.st == st {
			l.st.Close()
			l.st = nil
		}
		l.mu.Unlock()
	}
	return err
}

// Messages implements Reader.
func (l *Lazy) Messages(ctx context.Context, f Filter) ([]Message, error) {
	st, err := l.store()
	if err != nil {
		return nil, err
	}
	m, err := st.Messages(ctx, f)
	return m, l.fail(st, err)
}

// Message implements Reader.
func (l *Lazy) Message(ctx context.Context, node, id string) (Message, bool, error) {
	st, err := l.store()
	if err != nil {
		return Message{}, false, err
	}
	m, ok, err := st.Message(ctx, node, id)
	return m, ok, l.fail(st, err)
}

// Children implements Reader.
func (l *Lazy) Children(ctx context.Context, node, id string) ([]Message, error) {
	st, err := l.store()
	if err != nil {
		return nil, err
	}
	m, err := st.Children(ctx, node, id)
	return m, l.fail(st, err)
}

// Gaps implements Reader.
func (l *Lazy) Gaps(ctx context.Context, since, until time.Time) ([]Gap, error) {
	st, err := l.store()
	if err != nil {
		return nil, err
	}
	g, err := st.Gaps(ctx, since, until)
	return g, l.fail(st, err)
}

// Close closes the store if it is open.
func (l *Lazy) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st != nil {
		err := l.st.Close()
		l.st = nil
		return err
	}
	return nil
}
