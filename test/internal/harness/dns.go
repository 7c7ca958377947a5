package harness

import (
	"fmt"
	"testing"

	"github.com/mailtee/mailtee/internal/dnsresolve/dnstest"
)

// DNSServer is the one test name server (dnstest), so that mailtee
// (dns_servers = Addr) finds next hops by MX lookup as in production.
type DNSServer = dnstest.Server

// NewDNS starts a name server on 127.0.0.1, shut down at test cleanup: a
// maps names to IPv4 addresses, mx maps domains to "pref host" lines.
// Other names do not exist (NXDOMAIN).
func NewDNS(t testing.TB, a map[string]string, mx map[string][]string) *DNSServer {
	t.Helper()
	var records []string
	for name, ip := range a {
		records = append(records, fmt.Sprintf("%s. 60 IN A %s", name, ip))
	}
	for domain, recs := range mx {
		for _, rec := range recs {
			records = append(records, fmt.Sprintf("%s. 60 IN MX %s.", domain, rec))
		}
	}
	return dnstest.Start(t, records...)
}
