// Package dnstest runs a small DNS server on 127.0.0.1 for tests, so that
// MX and address lookups never leave the machine. It answers from records
// given in zone-file syntax, follows CNAMEs within its data, answers
// NXDOMAIN for names it has no record for, and can be told to fail a name
// with SERVFAIL, to never answer it, or to truncate every UDP answer.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
)

// Server is a running test name server. Its methods are safe for
// concurrent use with the queries it answers.
type Server struct {
	// Addr is "127.0.0.1:port", for dnsresolve.Resolver.Servers; the same port
	// answers over UDP and TCP.
	Addr string

	// Queries counts the questions received, over UDP and TCP.
	Queries atomic.Int64

	mu       sync.Mutex
	records  map[string][]dns.RR // by lower-case FQDN
	servfail map[string]bool
	drop     map[string]bool
	truncate bool
}

// Start starts a server with the given records ("mx.example. 300 IN A
// 127.0.0.1", "example. MX 10 mx.example.") and stops it when the test
// ends.
func Start(t testing.TB, records ...string) *Server {
	t.Helper()
	s := &Server{records: map[string][]dns.RR{}, servfail: map[string]bool{}, drop: map[string]bool{}}
	for _, r := range records {
		s.Add(t, r)
	}
	var udp, tcp *dns.Server
	// The TCP port must match the UDP one; retry if another test holds it.
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			if try < 10 {
				continue
			}
			t.Fatal(err)
		}
		s.Addr = pc.LocalAddr().String()
		udp = &dns.Server{PacketConn: pc, Handler: s.handler(true)}
		tcp = &dns.Server{Listener: l, Handler: s.handler(false)}
		break
	}
	for _, srv := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
	}
	t.Cleanup(func() {
		udp.Shutdown()
		tcp.Shutdown()
	})
	return s
}

// Add adds a record in zone-file syntax.
func (s *Server) Add(t testing.TB, record string) {
	t.Helper()
	rr, err := dns.NewRR(record)
	if err != nil || rr == nil {
		t.Fatalf("dnstest: bad record %q: %v", record, err)
	}
	name := strings.ToLower(rr.Header().Name)
	s.mu.Lock()
	s.records[name] = append(s.records[name], rr)
	s.mu.Unlock()
}

// ServFail makes every question about name fail with SERVFAIL.
func (s *Server) ServFail(name string) {
	s.mu.Lock()
	s.servfail[strings.ToLower(dns.Fqdn(name))] = true
	s.mu.Unlock()
}

// Drop makes the server ignore every question about name, so that the
// client times out.
func (s *Server) Drop(name string) {
	s.mu.Lock()
	s.drop[strings.ToLower(dns.Fqdn(name))] = true
	s.mu.Unlock()
}

// TruncateUDP makes every UDP answer empty with the TC bit set, so that
// the client must ask again over TCP.
func (s *Server) TruncateUDP(on bool) {
	s.mu.Lock()
	s.truncate = on
	s.mu.Unlock()
}

func (s *Server) handler(udp bool) dns.HandlerFunc {
	return func(w dns.ResponseWriter, req *dns.Msg) {
		s.Queries.Add(1)
		resp := new(dns.Msg)
		resp.SetReply(req)
		resp.Authoritative = true
		if len(req.Question) != 1 {
			resp.Rcode = dns.RcodeFormatError
			w.WriteMsg(resp)
			return
		}
		q := req.Question[0]
		name := strings.ToLower(q.Name)

		s.mu.Lock()
		defer s.mu.Unlock()
		switch {
		case s.drop[name]:
			return
		case s.servfail[name]:
			resp.Rcode = dns.RcodeServerFailure
		case udp && s.truncate:
			resp.Truncated = true
		default:
			s.answer(resp, name, q.Qtype)
		}
		w.WriteMsg(resp)
	}
}

// answer fills resp with the records of qtype for name, following CNAMEs.
func (s *Server) answer(resp *dns.Msg, name string, qtype uint16) {
	for range 8 {
		rrs, ok := s.records[name]
		if !ok {
			if len(resp.Answer) == 0 {
				resp.Rcode = dns.RcodeNameError
			}
			return
		}
		var cname string
		for _, rr := range rrs {
			switch {
			case rr.Header().Rrtype == qtype:
				resp.Answer = append(resp.Answer, dns.Copy(rr))
			case rr.Header().Rrtype == dns.TypeCNAME:
				resp.Answer = append(resp.Answer, dns.Copy(rr))
				cname = strings.ToLower(rr.(*dns.CNAME).Target)
			}
		}
		if cname == "" || qtype == dns.TypeCNAME {
			return
		}
		name = cname
	}
}
