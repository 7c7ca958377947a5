// Package srs implements the Sender Rewriting Scheme for mailbox copies,
// compatible with postsrsd (github.com/roehling/postsrsd, whose srs2.c is
// libsrs2's, after Shevek's "Sender Rewriting Scheme" paper):
//
//	SRS0=HHHH=TT=domain=local@srs_domain
//	SRS1=HHHH=domain==HHHH=TT=orig-domain=local@srs_domain
//
// TT is the day of signing (days since the epoch, mod 1024) in two
// base32 characters "A-Z2-7"; HHHH is the first four characters of the
// base64 of HMAC-SHA1(secret, lower(TT + domain + local)) (for SRS1:
// of lower(domain + rest), rest being what followed "SRS0" with its
// separator). A mail server that forwards an SRS0 address again makes it
// SRS1: it names the first forwarder's domain and keeps its SRS0 part,
// so that a bounce goes back through it.
//
// Decoding checks the hash with every secret (the first signs; the
// others are old ones still accepted, postsrsd's rotation), case-
// insensitively, since some servers fold the local part; and an SRS0
// stamp must be at most MaxAge days old (21, postsrsd's default) and
// not in the future.
package srs

import (
	"crypto/hmac"
	"crypto/sha1"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/address"
)

// DefaultMaxAge is postsrsd's (srs2.c's) maxage: how many days an SRS0
// address stays valid.
const DefaultMaxAge = 21

const (
	timeChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	hashChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	hashLen   = 4
	timeSlots = 1024 // two base32 characters
	day       = 24 * time.Hour
)

// Errors of Reverse.
var (
	ErrNotSRS  = errors.New("not an SRS address")
	ErrSyntax  = errors.New("malformed SRS address")
	ErrHash    = errors.New("hash invalid in SRS address")
	ErrExpired = errors.New("time stamp out of date in SRS address")
)

// Codec encodes and decodes SRS addresses at Domain.
type Codec struct {
	// Domain is srs_domain: where rewritten senders point.
	Domain string
	// Secrets: the first signs, every one verifies.
	Secrets [][]byte
	// MaxAge is how many days an SRS0 address is valid (DefaultMaxAge
	// when 0).
	MaxAge int
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// New is a Codec for domain with the given secrets (the first signs).
func New(domain string, secrets [][]byte) *Codec {
	return &Codec{Domain: address.NormalizeDomain(domain), Secrets: secrets}
}

func (c *Codec) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Codec) maxAge() int {
	if c.MaxAge > 0 {
		return c.MaxAge
	}
	return DefaultMaxAge
}

// IsSRS reports whether local looks like an SRS local part ("SRS0=",
// "SRS1=", with '-' or '+' as well as '='), as libsrs2's
// SRS_IS_SRS_ADDRESS decides it: what Reverse will try to decode.
func IsSRS(local string) bool {
	return len(local) >= 5 && strings.EqualFold(local[:3], "SRS") &&
		(local[3] == '0' || local[3] == '1') && strings.IndexByte("=-+", local[4]) >= 0
}

// Forward rewrites the envelope sender from, an address in external
// form (the local part quoted when it must be), as postsrsd's forward
// map does: the null sender and a sender at Domain stay as they are, a
// valid SRS address of ours is already rewritten, an SRS0 or SRS1
// address of another forwarder becomes SRS1, anything else SRS0. The
// result is in external form.
func (c *Codec) Forward(from string) (string, error) {
	if from == "" {
		return "", nil
	}
	a, err := address.Parse("<" + from + ">")
	if err != nil {
		return "", err
	}
	if a.Domain == "" || a.Local == "" {
		// Neither would decode again.
		return "", fmt.Errorf("sender <%s> has no local part or no domain: not rewritten", from)
	}
	if address.NormalizeDomain(a.Domain) == c.Domain {
		return from, nil
	}
	if len(c.Secrets) == 0 {
		return "", errors.New("no SRS secret")
	}
	if IsSRS(a.Local) {
		if _, err := c.reverseLocal(a.Local); err == nil {
			return from, nil // ours, valid: postsrsd's "Already rewritten"
		}
	}
	return address.QuoteLocal(c.forwardLocal(a.Local, a.Domain)) + "@" + c.Domain, nil
}

// forwardLocal is srs_compile_guarded's local part for local@host.
func (c *Codec) forwardLocal(local, host string) string {
	sep := byte('=')
	if len(local) > 5 && strings.EqualFold(local[:4], "SRS1") && strings.IndexByte("=-+", local[4]) >= 0 {
		// Another forwarder's SRS1: keep its first host and SRS0 part,
		// sign them again. A malformed one is rewritten as plain SRS0.
		_, rest, _ := strings.Cut(local[5:], "=") // past its hash
		if h, u, ok := strings.Cut(rest, "="); ok && h != "" && u != "" {
			hash := c.hash(c.Secrets[0], h, u)
			return "SRS1" + string(sep) + hash + "=" + h + "=" + u
		}
	}
	if len(local) > 4 && strings.EqualFold(local[:4], "SRS0") && strings.IndexByte("=-+", local[4]) >= 0 {
		u := local[4:] // with its separator: SRS1=HHHH=host==HHHH=...
		hash := c.hash(c.Secrets[0], host, u)
		return "SRS1" + string(sep) + hash + "=" + host + "=" + u
	}
	stamp := Stamp(c.now())
	hash := c.hash(c.Secrets[0], stamp, host, local)
	return "SRS0" + string(sep) + hash + "=" + stamp + "=" + host + "=" + local
}

// Reverse decodes addr (external form; its domain is not looked at, as
// in postsrsd) back to where a bounce to it would go: the original
// sender for SRS0, the first forwarder's SRS0 address for SRS1. The
// error says why addr is refused: ErrNotSRS, ErrSyntax, ErrHash,
// ErrExpired.
func (c *Codec) Reverse(addr string) (string, error) {
	local := addr
	if a, err := address.Parse("<" + addr + ">"); err == nil {
		local = a.Local
	} else if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		local = addr[:i]
	}
	return c.reverseLocal(local)
}

// ReverseLocal is Reverse for a local part in internal (unquoted) form.
func (c *Codec) ReverseLocal(local string) (string, error) { return c.reverseLocal(local) }

func (c *Codec) reverseLocal(local string) (string, error) {
	if !IsSRS(local) {
		return "", ErrNotSRS
	}
	if len(c.Secrets) == 0 {
		return "", ErrHash
	}
	if local[3] == '1' {
		// SRS1=HHHH=host==rest -> SRS0=rest@host (rest keeps its
		// separator).
		hash, rest, ok := strings.Cut(local[5:], "=")
		if !ok || hash == "" {
			return "", ErrSyntax
		}
		host, user, ok := strings.Cut(rest, "=")
		if !ok || host == "" || user == "" {
			return "", ErrSyntax
		}
		if !c.checkHash(hash, host, user) {
			return "", ErrHash
		}
		return address.QuoteLocal("SRS0"+user) + "@" + host, nil
	}
	parts := strings.SplitN(local[5:], "=", 4)
	if len(parts) != 4 || parts[0] == "" || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return "", ErrSyntax
	}
	hash, stamp, host, user := parts[0], parts[1], parts[2], parts[3]
	if err := c.checkStamp(stamp); err != nil {
		return "", err
	}
	if !c.checkHash(hash, stamp, host, user) {
		return "", ErrHash
	}
	return address.QuoteLocal(user) + "@" + host, nil
}

// Stamp is the SRS time stamp of t: days since the epoch, mod 1024, in
// two base32 characters.
func Stamp(t time.Time) string {
	d := t.Unix() / int64(day/time.Second)
	return string([]byte{timeChars[(d>>5)&31], timeChars[d&31]})
}

// checkStamp is srs_timestamp_check: a stamp from the future counts as
// 1024 days old, so it is refused as well.
func (c *Codec) checkStamp(stamp string) error {
	if len(stamp) != 2 {
		return ErrExpired
	}
	then := 0
	for i := 0; i < 2; i++ {
		k := strings.IndexByte(timeChars, upper(stamp[i]))
		if k < 0 {
			return ErrSyntax
		}
		then = then<<5 | k
	}
	now := int((c.now().Unix() / int64(day/time.Second)) % timeSlots)
	for now < then {
		now += timeSlots
	}
	if now <= then+c.maxAge() {
		return nil
	}
	return ErrExpired
}

// stampDay is the day (days since the epoch, mod 1024) of the stamp of
// an SRS0 local part; ok is false for any other.
func stampDay(local string) (day int, ok bool) {
	if !IsSRS(local) || local[3] != '0' {
		return 0, false
	}
	parts := strings.SplitN(local[5:], "=", 3)
	if len(parts) < 2 || len(parts[1]) != 2 {
		return 0, false
	}
	for i := 0; i < 2; i++ {
		k := strings.IndexByte(timeChars, upper(parts[1][i]))
		if k < 0 {
			return 0, false
		}
		day = day<<5 | k
	}
	return day, true
}

// sameStampDay says whether t is the day of stamp day, or the day after
// (the sender is rewritten before the transaction, its status recorded
// after it, maybe past midnight).
func sameStampDay(t time.Time, day int) bool {
	d := int((t.Unix() / int64(24*time.Hour/time.Second)) % timeSlots)
	return (d-day+timeSlots)%timeSlots <= 1
}

func upper(b byte) byte {
	if 'a' <= b && b <= 'z' {
		return b - 'a' + 'A'
	}
	return b
}

// checkHash compares hash (at least its first four characters; more are
// ignored, as libsrs2 does) with every secret's, case-insensitively.
func (c *Codec) checkHash(hash string, parts ...string) bool {
	if len(hash) < hashLen {
		return false
	}
	hash = hash[:hashLen]
	for _, s := range c.Secrets {
		if strings.EqualFold(hash, c.hash(s, parts...)) {
			return true
		}
	}
	return false
}

// hash is srs_hash_create_v: HMAC-SHA1 over the ASCII-lowercased parts,
// its first bits in base64.
func (c *Codec) hash(secret []byte, parts ...string) string {
	m := hmac.New(sha1.New, secret)
	for _, p := range parts {
		m.Write([]byte(lowerASCII(p)))
	}
	sum := m.Sum(nil)
	// Four base64 characters are the first three bytes.
	return string([]byte{
		hashChars[sum[0]>>2],
		hashChars[(sum[0]&3)<<4|sum[1]>>4],
		hashChars[(sum[1]&15)<<2|sum[2]>>6],
		hashChars[sum[2]&63],
	})
}

// lowerASCII folds A-Z only, as C's tolower in the "C" locale does (a
// UTF-8 local part hashes as postsrsd hashes it).
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
