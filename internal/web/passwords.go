package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mailtee/mailtee/internal/diag"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Passwords is dashboard_password_file: who may open the dashboard
// from off loopback. The file holds "user:hash" lines, as
// `htpasswd -nbB user password` prints them, or one bare hash that any
// user name goes with; blank lines and lines starting with '#' are
// skipped. A hash is bcrypt ($2a$, $2b$, $2y$) or argon2id in the PHC
// string format that the argon2 command prints with -e
// ($argon2id$v=19$m=KiB,t=passes,p=lanes$salt$hash, base64 without
// padding).
type Passwords struct {
	users map[string]hash
	any   hash // the one bare hash, if the file has that form

	// A browser sends the credentials with every request, and each
	// bcrypt or argon2 check costs tens of milliseconds (on purpose):
	// a good pair is remembered for a while, under a keyed digest so
	// that the memory holds no password.
	mu    sync.Mutex
	key   [32]byte
	known map[[32]byte]time.Time
}

// hash is one stored password hash.
type hash interface {
	verify(password []byte) bool
}

// Limits on what a hash may ask of the server at each login: an argon2
// line with m=4194304 (4 GiB) would be honoured per request otherwise.
const (
	maxArgonMemory = 1 << 20 // KiB: 1 GiB
	maxArgonTime   = 64
	maxBcryptCost  = 16 // about 5 s per check on a current CPU
	minBcryptCost  = 10 // below: a warning
	verifiedFor    = 5 * time.Minute
	maxVerified    = 1024
)

// LoadPasswords reads a dashboard_password_file. Problems with its
// lines come back as findings (file and line); a file that cannot be
// read is an error.
func LoadPasswords(file string) (*Passwords, diag.List, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	p, d := ParsePasswords(file, data)
	return p, d, nil
}

// ParsePasswords reads the text of a password file; file names it in
// findings. It returns nil when the file has errors or no entry.
func ParsePasswords(file string, data []byte) (*Passwords, diag.List) {
	var out diag.List
	p := &Passwords{users: map[string]hash{}}
	first := map[string]int{}
	bare := 0
	entries := 0
	// A file that is no password file (the wrong path) would give an
	// error per line: the first few say enough.
	const maxLineErrors = 5
	bad := 0
	for i, line := range strings.Split(string(data), "\n") {
		num := i + 1
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		entries++
		user, enc, found := strings.Cut(line, ":")
		if !found || strings.HasPrefix(line, "$") {
			// a bare hash: its '$' fields hold no ':' in either format
			user, enc = "", line
		}
		h, err := parseHash(enc)
		if b, ok := h.(bcryptHash); ok {
			if cost, _ := bcrypt.Cost([]byte(b)); cost < minBcryptCost {
				out.Warnf(file, num, "dashboard_password_file: bcrypt cost %d (htpasswd's default is 5): a copy of this file is cracked quickly; make the hash with htpasswd -nbB -C 12", cost)
			}
		}
		if err != nil {
			if bad++; bad <= maxLineErrors {
				out.Errorf(file, num, "dashboard_password_file: %v", err)
			}
			continue
		}
		if user == "" {
			if found && !strings.HasPrefix(line, "$") {
				out.Errorf(file, num, "dashboard_password_file: empty user name before ':'")
				continue
			}
			bare++
			p.any = h
			continue
		}
		if strings.ContainsFunc(user, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			out.Errorf(file, num, "dashboard_password_file: user name %q has a blank or control character", user)
			continue
		}
		if l, dup := first[user]; dup {
			out.Errorf(file, num, "dashboard_password_file: user %s again (first on line %d); keep one line per user", user, l)
			continue
		}
		first[user] = num
		p.users[user] = h
	}
	if bad > maxLineErrors {
		out.Errorf(file, 0, "dashboard_password_file: %d more lines are not supported hashes; is this the password file?", bad-maxLineErrors)
	}
	if bare > 0 && (bare > 1 || len(first) > 0) {
		out.Errorf(file, 0, "dashboard_password_file: a bare hash (any user name) must be the file's only entry; write user:hash lines instead")
	}
	if entries == 0 {
		out.Errorf(file, 0, "dashboard_password_file: no entry; add one with: htpasswd -nbB admin 'PASSWORD' >> %s", file)
	}
	if out.HasErrors() {
		return nil, out
	}
	if _, err := rand.Read(p.key[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	p.known = map[[32]byte]time.Time{}
	return p, out
}

// parseHash recognizes one stored hash.
func parseHash(s string) (hash, error) {
	switch {
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		cost, err := bcrypt.Cost([]byte(s))
		if err != nil || len(s) != 60 {
			return nil, fmt.Errorf("not a bcrypt hash (60 characters, $2y$NN$ and 53 more): %.7s...", s)
		}
		if cost > maxBcryptCost {
			return nil, fmt.Errorf("bcrypt cost %d is more than %d: every login would take seconds; make the hash again with a lower cost (htpasswd -nbB -C 10)", cost, maxBcryptCost)
		}
		return bcryptHash(s), nil
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	case strings.HasPrefix(s, "$argon2i$"), strings.HasPrefix(s, "$argon2d$"):
		return nil, fmt.Errorf("%s: only argon2id is supported; make the hash with argon2's -id option", s[:strings.Index(s[1:], "$")+1])
	case strings.HasPrefix(s, "$apr1$"), strings.HasPrefix(s, "{SHA}"), strings.HasPrefix(s, "$1$"), strings.HasPrefix(s, "$5$"), strings.HasPrefix(s, "$6$"):
		return nil, errors.New("MD5, SHA and crypt hashes are not supported: make a bcrypt hash with htpasswd -nbB USER 'PASSWORD', or an argon2id one")
	}
	return nil, errors.New("not a supported hash: expected bcrypt ($2y$..., from htpasswd -nbB USER 'PASSWORD') or argon2id ($argon2id$v=19$m=...,t=...,p=...$salt$hash)")
}

type bcryptHash string

func (h bcryptHash) verify(pw []byte) bool {
	return bcrypt.CompareHashAndPassword([]byte(h), pw) == nil
}

type argon2idHash struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	sum     []byte
}

func (h *argon2idHash) verify(pw []byte) bool {
	got := argon2.IDKey(pw, h.salt, h.time, h.memory, h.threads, uint32(len(h.sum)))
	return subtle.ConstantTimeCompare(got, h.sum) == 1
}

// parseArgon2id reads "$argon2id$v=19$m=65536,t=3,p=4$SALT$HASH".
func parseArgon2id(s string) (hash, error) {
	f := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(f) != 6 {
		return nil, errors.New("not an argon2id hash: expected $argon2id$v=19$m=KiB,t=N,p=N$salt$hash")
	}
	if f[2] != "v=19" {
		return nil, fmt.Errorf("argon2id %s: only version 19 (v=19, argon2 1.3) is supported; make the hash again", f[2])
	}
	h := &argon2idHash{}
	seen := map[string]bool{}
	for _, kv := range strings.Split(f[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || seen[k] {
			return nil, fmt.Errorf("argon2id parameters %q: expected m=KiB,t=N,p=N", f[3])
		}
		seen[k] = true
		switch k {
		case "m":
			h.memory = uint32(n)
		case "t":
			h.time = uint32(n)
		case "p":
			if n > 255 {
				return nil, fmt.Errorf("argon2id p=%d: at most 255 lanes", n)
			}
			h.threads = uint8(n)
		default:
			return nil, fmt.Errorf("argon2id parameters %q: unknown %q; expected m=KiB,t=N,p=N", f[3], k)
		}
	}
	switch {
	case len(seen) != 3:
		return nil, fmt.Errorf("argon2id parameters %q: expected m=KiB,t=N,p=N", f[3])
	case h.time < 1 || h.threads < 1 || h.memory < 8*uint32(h.threads):
		return nil, fmt.Errorf("argon2id parameters %q: need t >= 1, p >= 1 and m >= 8*p", f[3])
	case h.memory > maxArgonMemory || h.time > maxArgonTime:
		return nil, fmt.Errorf("argon2id parameters %q: more than m=%d or t=%d, which every login would pay; make the hash again with less", f[3], maxArgonMemory, maxArgonTime)
	}
	var err error
	if h.salt, err = unbase64(f[4]); err != nil || len(h.salt) < 8 {
		return nil, errors.New("argon2id salt: expected at least 8 bytes in base64")
	}
	if h.sum, err = unbase64(f[5]); err != nil || len(h.sum) < 4 || len(h.sum) > 1024 {
		return nil, errors.New("argon2id hash: expected 4 to 1024 bytes in base64")
	}
	return h, nil
}

// unbase64 takes the PHC format's base64 without padding, and with it,
// which some tools write.
func unbase64(s string) ([]byte, error) {
	if b, err := base64.RawStdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

// Users returns the number of user:hash entries (0 with one bare hash).
func (p *Passwords) Users() int { return len(p.users) }

// Verify checks a user name and password. It costs a hash computation
// unless the same pair was verified lately; an unknown user costs one
// too, so that timing does not tell which users exist.
func (p *Passwords) Verify(user, password string) bool {
	if p == nil {
		return false
	}
	mac := hmac.New(sha256.New, p.key[:])
	mac.Write([]byte(user))
	mac.Write([]byte{0})
	mac.Write([]byte(password))
	var k [32]byte
	mac.Sum(k[:0])
	now := time.Now()
	p.mu.Lock()
	exp, ok := p.known[k]
	p.mu.Unlock()
	if ok && now.Before(exp) {
		return true
	}
	h, found := p.users[user]
	if !found {
		h = p.any
	}
	if h == nil {
		// the same work as a real check, against a hash no password has
		dummyHash().verify([]byte(password))
		return false
	}
	if !h.verify([]byte(password)) {
		return false
	}
	p.mu.Lock()
	if len(p.known) >= maxVerified {
		clear(p.known)
	}
	p.known[k] = now.Add(verifiedFor)
	p.mu.Unlock()
	return true
}

// dummyHash is bcrypt at cost 10 of a random password, made at first
// use: every command that links this package would pay for it at start.
var dummyHash = sync.OnceValue(func() bcryptHash {
	pw := make([]byte, 24)
	rand.Read(pw)
	h, err := bcrypt.GenerateFromPassword(pw, 10)
	if err != nil {
		panic(err)
	}
	return bcryptHash(h)
})
