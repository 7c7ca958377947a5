package address

import "strings"

// ExtRules are the Postfix parameters that decide how a local part splits
// into user and address extension (Postfix's split_addr.c).
type ExtRules struct {
	// Delims is recipient_delimiter: a set of characters, any of which
	// starts an extension (Postfix 2.11 and later). Empty means no split.
	Delims string
	// OwnerRequestSpecial is owner_request_special: with '-' among the
	// delimiters, owner-xxx and xxx-request are not split. Postfix's
	// default is yes; DefaultExtRules sets it.
	OwnerRequestSpecial bool
	// DoubleBounce is double_bounce_sender, which is never split;
	// "" means Postfix's default, "double-bounce".
	DoubleBounce string
}

// DefaultExtRules returns the rules for recipient_delimiter = delims with
// the other parameters at their Postfix defaults.
func DefaultExtRules(delims string) ExtRules {
	return ExtRules{Delims: delims, OwnerRequestSpecial: true}
}

// SplitExt splits a local part at the first recipient delimiter, with
// Postfix's defaults for the other rules: see ExtRules.Split.
func SplitExt(local, delims string) (user, ext string) {
	return DefaultExtRules(delims).Split(local)
}

// Split splits local at the first character that is in r.Delims. The
// extension keeps its delimiter, as Postfix's strip_addr returns it, so that
// user+foo gives "user" and "+foo" and user+foo can be rebuilt as
// user + ext. ext is empty when local is not split:
//
//   - postmaster, mailer-daemon and the double-bounce sender (any case);
//   - with OwnerRequestSpecial and '-' among the delimiters, local parts
//     that begin with owner- or end in -request (but not "-request" itself);
//   - when the delimiter is the first character, which would leave no user;
//   - when no delimiter occurs.
//
// A delimiter as the last character is split: user+ gives "user" and "+".
func (r ExtRules) Split(local string) (user, ext string) {
	if r.Delims == "" {
		return local, ""
	}
	bounce := r.DoubleBounce
	if bounce == "" {
		bounce = "double-bounce"
	}
	if EqualFoldASCII(local, "postmaster") || EqualFoldASCII(local, "mailer-daemon") ||
		EqualFoldASCII(local, bounce) {
		return local, ""
	}
	if r.OwnerRequestSpecial && strings.IndexByte(r.Delims, '-') >= 0 {
		const owner, request = "owner-", "-request"
		if len(local) >= len(owner) && EqualFoldASCII(local[:len(owner)], owner) {
			return local, ""
		}
		if len(local) > len(request) && EqualFoldASCII(local[len(local)-len(request):], request) {
			return local, ""
		}
	}
	i := strings.IndexAny(local, r.Delims)
	if i <= 0 {
		return local, ""
	}
	return local[:i], local[i:]
}

// EqualFoldASCII is strcasecmp() == 0: Unicode folding would let
// "postmaſter" (long s) pass for postmaster, which Postfix does not.
func EqualFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
