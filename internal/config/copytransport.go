package config

import "strings"

// validCopyTransport is copy_transport, a transport_maps result
// "transport:nexthop": its next hop is checked as relayhost's is (an
// LMTP "unix:/path" is a socket, "inet:" the prefix of a host). The
// transport is check's (route.CheckCopies): it knows master.cf.
func validCopyTransport(v string) error {
	_, nexthop, _ := strings.Cut(strings.TrimSpace(v), ":")
	if nexthop == "" || strings.HasPrefix(nexthop, "unix:") {
		return nil
	}
	return validNexthop(strings.TrimPrefix(nexthop, "inet:"))
}
