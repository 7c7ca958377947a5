package harness

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// DNSServer answers A and MX queries from a fixed zone, so that mailtee
// (dns_servers = Addr) finds next hops by MX lookup as in production.
type DNSServer struct {
	Addr string
	srv  *dns.Server
}

// NewDNS starts a resolver on 127.0.0.1 (UDP), shut down at test
// cleanup: a maps names to IPv4 addresses, mx maps domains to "pref
// host" lines. Other names do not exist (NXDOMAIN).
func NewDNS(t testing.TB, a map[string]string, mx map[string][]string) *DNSServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
		found := false
		if ip, ok := a[name]; ok {
			found = true
			if q.Qtype == dns.TypeA {
				rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A %s", q.Name, ip))
				m.Answer = append(m.Answer, rr)
			}
		}
		if recs, ok := mx[name]; ok {
			found = true
			if q.Qtype == dns.TypeMX {
				for _, rec := range recs {
					rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN MX %s.", q.Name, rec))
					m.Answer = append(m.Answer, rr)
				}
			}
		}
		if !found {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return &DNSServer{Addr: pc.LocalAddr().String(), srv: srv}
}
