// Package users finds login accounts the way Postfix's local(8) does:
// through the system's name service switch (getpwnam_r(3), as
// src/global/mypwd.c calls it), at delivery time. Accounts that live in
// LDAP, SSSD or libnss-extrausers are found as well as those in
// /etc/passwd, and an account created a second ago receives mail without a
// reload.
//
// Two ways to the name service, chosen at build time:
//
//   - with cgo (the default wherever a C compiler is installed), getpwnam_r
//     itself (nss_cgo.go);
//   - without cgo (CGO_ENABLED=0, or no C compiler), the getent(1) program,
//     "getent passwd NAME", run with a time limit (getent.go). Go's os/user
//     is no help there: without cgo it reads /etc/passwd only.
//
// Both tell "no such user" from "the lookup failed" as far as the system
// lets them (see Lookup): local(8) bounces the first and defers the second
// (src/local/mailbox.c, recipient.c: "user lookup error", 4.0.0).
package users

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// User is a passwd(5) entry, as far as local delivery needs it.
type User struct {
	Name     string
	UID, GID uint32
	Home     string
	Shell    string // pw_shell: mailbox_command's and commands' $SHELL
}

// Cache lifetimes. A found account is remembered briefly because one
// delivery looks its user up several times (recipient check, .forward,
// mailbox) and each getent is an exec; "no such user" is remembered for
// less, so that an account created now receives mail within seconds (the
// next retry, or the next RCPT) without a reload. Errors are never
// remembered.
const (
	FoundTTL    = 30 * time.Second
	NotFoundTTL = 2 * time.Second
)

// Timeout bounds one lookup. getpwnam_r has no timeout of its own and an
// LDAP backend that does not answer can hold it for minutes; past Timeout
// Lookup gives up with an error (the caller defers) and the abandoned call
// finishes in the background.
var Timeout = 20 * time.Second

// LookupError is a failed lookup: the name service could not say whether
// the user exists (a backend down, a timeout). A caller defers the mail.
type LookupError struct {
	Name string
	Err  error
}

func (e *LookupError) Error() string {
	return fmt.Sprintf("user lookup error for %q: %v (check the passwd line of /etc/nsswitch.conf and its backends)", e.Name, e.Err)
}

func (e *LookupError) Unwrap() error { return e.Err }

// Lookup finds the login name through the name service, as getpwnam(3).
// It returns ok=false and no error for "no such user", and a *LookupError
// when the name service failed (getpwnam_r returned an error number, getent
// could not run, was killed at Timeout or exited with a status other than
// 0 and 2). With getent a backend that fails but lets glibc go on reads as
// "no such user": getent exits 2 for both. Names are case-sensitive, as
// logins are; a name that cannot be a login (empty, or with ':', '/',
// control characters or a NUL) is not looked up and does not exist.
func Lookup(name string) (User, bool, error) {
	return defaultCache.lookup(name)
}

// LookupID finds the login of a uid through the name service, as
// getpwuid(3): the owner of an alias table or an :include: file, whose
// rights local delivery takes. Its results mean what Lookup's do; it is
// not cached (it is asked only for those files' owners).
func LookupID(uid uint32) (User, bool, error) {
	u, ok, err := sysLookupID(uid)
	if err != nil {
		return User{}, false, &LookupError{Name: fmt.Sprintf("uid %d", uid), Err: err}
	}
	return u, ok, nil
}

// validName rejects what no passwd(5) line can hold, and what getent would
// take for an option.
func validName(name string) bool {
	if name == "" || name[0] == '-' || name[0] == '+' {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < ' ' || c == 0x7f || c == ':' || c == '/' {
			return false
		}
	}
	return true
}

type entry struct {
	u       User
	ok      bool
	expires time.Time
}

type call struct {
	done chan struct{}
	u    User
	ok   bool
	err  error
}

// cache remembers recent answers and joins concurrent lookups of one
// name, so that a burst of mail for one user makes one NSS call.
type cache struct {
	lookup1 func(string) (User, bool, error) // the system's lookup
	now     func() time.Time

	// sem bounds the NSS calls under way: each holds an OS thread (cgo)
	// or a process (getent), and a backend that hangs must not take
	// thousands of them.
	sem chan struct{}

	mu       sync.Mutex
	entries  map[string]entry
	inflight map[string]*call
}

// maxCalls is how many lookups may be under way at once.
const maxCalls = 32

var defaultCache = newCache(sysLookup)

func newCache(f func(string) (User, bool, error)) *cache {
	return &cache{lookup1: f, now: time.Now, sem: make(chan struct{}, maxCalls),
		entries: map[string]entry{}, inflight: map[string]*call{}}
}

// maxEntries bounds the cache: names come from outside senders.
const maxEntries = 4096

func (c *cache) lookup(name string) (User, bool, error) {
	if !validName(name) {
		return User{}, false, nil
	}
	c.mu.Lock()
	now := c.now()
	if e, hit := c.entries[name]; hit && now.Before(e.expires) {
		c.mu.Unlock()
		return e.u, e.ok, nil
	}
	if cl := c.inflight[name]; cl != nil {
		c.mu.Unlock()
		return cl.wait(name)
	}
	cl := &call{done: make(chan struct{})}
	c.inflight[name] = cl
	c.mu.Unlock()

	go func() {
		c.sem <- struct{}{}
		cl.u, cl.ok, cl.err = c.lookup1(name)
		<-c.sem
		close(cl.done)
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.inflight, name)
		if cl.err != nil {
			return
		}
		now := c.now()
		if len(c.entries) >= maxEntries {
			for k, e := range c.entries {
				if !now.Before(e.expires) {
					delete(c.entries, k)
				}
			}
			if len(c.entries) >= maxEntries {
				clear(c.entries)
			}
		}
		ttl := FoundTTL
		if !cl.ok {
			ttl = NotFoundTTL
		}
		c.entries[name] = entry{u: cl.u, ok: cl.ok, expires: now.Add(ttl)}
	}()
	return cl.wait(name)
}

var errTimeout = errors.New("no answer from the name service")

func (cl *call) wait(name string) (User, bool, error) {
	t := time.NewTimer(Timeout)
	defer t.Stop()
	select {
	case <-cl.done:
		if cl.err != nil {
			return User{}, false, &LookupError{Name: name, Err: cl.err}
		}
		return cl.u, cl.ok, nil
	case <-t.C:
		return User{}, false, &LookupError{Name: name, Err: fmt.Errorf("%w within %v", errTimeout, Timeout)}
	}
}
