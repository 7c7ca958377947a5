//go:build !cgo || osusergo

package users

// sysLookup without cgo: getent(1) does the getpwnam(3) call (getent.go).
func sysLookup(name string) (User, bool, error) { return getentLookup(name) }

func sysLookupID(uid uint32) (User, bool, error) { return getentLookupID(uid) }

// Backend names the way lookups reach the name service.
const Backend = "getent"
