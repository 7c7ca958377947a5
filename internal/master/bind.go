package master

import (
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/dnsresolve"
	"github.com/mailtee/mailtee/internal/mastercf"
)

// bindOverride says whether an -o name on delivery service s sets the
// source address of its client: TRANSPORT_bind_address(6) under the
// service's name, or its program's smtp_ or lmtp_bind_address(6).
func bindOverride(s *mastercf.Service, name string) bool {
	p := s.Program()
	if p != "smtp" && p != "lmtp" {
		return false
	}
	for _, prefix := range []string{s.Name, p} {
		if rest, ok := strings.CutPrefix(name, prefix); ok && (rest == "_bind_address" || rest == "_bind_address6") {
			return true
		}
	}
	return false
}

// bindAddrs are the source addresses of transport's client (a service
// running program), config.BindAddress's.
func bindAddrs(cfg *config.Config, transport, program string) (v4, v6 string) {
	return cfg.BindAddress(transport, program, false), cfg.BindAddress(transport, program, true)
}

// lmtpClient is the LMTP client that cfg describes for transport: main.cf's
// (transport "lmtp"), or an lmtp service's with its source address.
func (s *Server) lmtpClient(cfg *config.Config, resolver *dnsresolve.Resolver, transport string) *deliver.Client {
	c := &deliver.Client{
		HeloName:       s.host,
		TLSLevel:       "none",
		Port:           portName(cfg.Get("lmtp_tcp_port"), "24"),
		ConnectTimeout: mustDuration(cfg, "smtp_connect_timeout"),
		CommandTimeout: 10 * time.Minute,
		Resolver:       resolver,
		LMTP:           true,
		SocketDir:      postfixQueueDir(cfg),
		Log:            s.log.Slog().With("component", "lmtp"),
	}
	c.BindAddr, c.BindAddr6 = bindAddrs(cfg, transport, "lmtp")
	c.BindEnforce, _ = cfg.Bool("lmtp_bind_address_enforce")
	return c
}

// lmtpServiceClient is the client of lmtp service svc when its source
// address differs from main.cf's lmtp client's, else nil.
func (s *Server) lmtpServiceClient(svc *mastercf.Service) *deliver.Client {
	sc := serviceConfig(s.cfg, svc)
	v4, v6 := bindAddrs(sc, svc.Name, "lmtp")
	enforce, _ := sc.Bool("lmtp_bind_address_enforce")
	if v4 == s.lmtp.BindAddr && v6 == s.lmtp.BindAddr6 && enforce == s.lmtp.BindEnforce {
		return nil
	}
	c := s.lmtpClient(sc, s.lmtp.Resolver, svc.Name)
	s.clients = append(s.clients, c)
	return c
}

// relayClient is the client of the built-in relay transport (no
// master.cf) when relay_bind_address(6) sets a source address other
// than smtp's, else nil.
func (s *Server) relayClient() *deliver.Client {
	v4, v6 := bindAddrs(s.cfg, "relay", "smtp")
	if v4 == s.smtp.BindAddr && v6 == s.smtp.BindAddr6 {
		return nil
	}
	c := s.smtpClient(s.cfg, s.smtp.Resolver, "relay")
	s.clients = append(s.clients, c)
	return c
}
