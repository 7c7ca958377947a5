package users

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A fake name service and clock: what is remembered, for how long, and
// that concurrent lookups of one name make one call.
func TestCache(t *testing.T) {
	var calls atomic.Int32
	var mu sync.Mutex
	exists, fail := map[string]bool{}, false
	c := newCache(func(name string) (User, bool, error) {
		calls.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return User{}, false, errors.New("backend down")
		}
		return User{Name: name}, exists[name], nil
	})
	now := time.Unix(1e9, 0)
	c.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	look := func(name string) (bool, error) {
		t.Helper()
		_, ok, err := c.lookup(name)
		return ok, err
	}
	waitCached := func(name string) { // the goroutine stores after the answer
		for i := 0; i < 1000; i++ {
			c.mu.Lock()
			_, ok := c.entries[name]
			c.mu.Unlock()
			if ok {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}

	// Not found, then created: "no" is remembered for NotFoundTTL only.
	if ok, err := look("new"); ok || err != nil {
		t.Fatal(ok, err)
	}
	waitCached("new")
	mu.Lock()
	exists["new"] = true
	mu.Unlock()
	if ok, _ := look("new"); ok {
		t.Error("the negative answer was not remembered at all")
	}
	advance(NotFoundTTL)
	if ok, _ := look("new"); !ok {
		t.Errorf("not found %v after it was created", NotFoundTTL)
	}
	waitCached("new")

	// Found is remembered for FoundTTL, even when the backend fails.
	mu.Lock()
	fail = true
	mu.Unlock()
	n := calls.Load()
	if ok, err := look("new"); !ok || err != nil || calls.Load() != n {
		t.Errorf("cached user: %v %v, %d calls", ok, err, calls.Load()-n)
	}
	advance(FoundTTL)
	var le *LookupError
	if _, err := look("new"); !errors.As(err, &le) {
		t.Errorf("failed backend after FoundTTL: %v", err)
	}
	// Errors are not remembered.
	mu.Lock()
	fail = false
	mu.Unlock()
	if ok, err := look("new"); !ok || err != nil {
		t.Errorf("after the backend is back: %v %v", ok, err)
	}
}

func TestCacheJoinsAndTimesOut(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	c := newCache(func(name string) (User, bool, error) {
		calls.Add(1)
		<-release
		return User{Name: name}, true, nil
	})
	old := Timeout
	Timeout = 200 * time.Millisecond
	defer func() { Timeout = old }()
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := c.lookup("slow")
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		var le *LookupError
		if !errors.As(err, &le) {
			t.Errorf("a hung backend: %v, want a *LookupError", err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d calls for one name, want 1", n)
	}
	close(release)
}
