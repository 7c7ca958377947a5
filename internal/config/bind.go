package config

import (
	"strings"

	"github.com/mailtee/mailtee/internal/diag"
)

// bindParams are mailtee's per-transport source addresses (README,
// "TRANSPORT_bind_address"): TRANSPORT_bind_address and
// TRANSPORT_bind_address6 are the source addresses of the SMTP or LMTP
// client of the delivery service TRANSPORT, so that a copy to the
// provider leaves from the address the provider allow-lists while other
// mail keeps its own. Each defaults to its program's parameter
// (smtp_bind_address, lmtp_bind_address), which stays Postfix's: the
// source address of every client of that program. "relay" is registered
// here as Postfix's smtp(8) service of that name; master.cf's services
// get theirs through serviceSuffixes.
var bindParams = map[string]bool{"_bind_address": true, "_bind_address6": true}

// bindNames are the built-in transports' names of bindParams with their
// defaults. smtp_ and lmtp_ are Postfix's own.
func bindNames() map[string]string {
	out := map[string]string{}
	for suffix := range bindParams {
		out["relay"+suffix] = "$smtp" + suffix
	}
	return out
}

// transportBind returns the parameter (smtp_bind_address,
// lmtp_bind_address6) that name, the TRANSPORT_bind_address(6) of a
// master.cf smtp or lmtp service, defaults to, and the service's name;
// "" when name is none.
func (c *Config) transportBind(name string) (param, service string) {
	for _, e := range c.services {
		rest, ok := strings.CutPrefix(name, e.Name)
		if ok && bindParams[rest] && e.Type == "unix" && (e.Command == "smtp" || e.Command == "lmtp") {
			return e.Command + rest, e.Name
		}
	}
	return "", ""
}

// BindAddress is the source address of the client of transport, a
// delivery service running program (smtp or lmtp), for IPv6 when six is
// set: TRANSPORT_bind_address(6) when main.cf or the service's -o sets
// it, else program_bind_address(6) (Postfix's, which an -o may set too).
func (c *Config) BindAddress(transport, program string, six bool) string {
	suffix := "_bind_address"
	if six {
		suffix += "6"
	}
	if _, ok := c.Set(transport + suffix); ok {
		return c.Get(transport + suffix)
	}
	return c.Get(program + suffix)
}

// checkBind validates TRANSPORT_bind_address(6) of a master.cf service
// as smtp_bind_address(6) is validated; false when name is not one.
func (c *Config) checkBind(s Setting, out *diag.List) bool {
	g, service := c.transportBind(s.Name)
	if g == "" {
		return false
	}
	v, err := c.Expand(s.Value)
	if err != nil {
		out.Errorf(c.File, s.Line, "%s: %v", s.Name, err)
		return true
	}
	valid := validIPv4
	if strings.HasSuffix(g, "6") {
		valid = validIPv6
	}
	if v != "" {
		if err := valid(v); err != nil {
			out.Errorf(c.File, s.Line, "%s: %v; write the address, of this host, that master.cf's %s service connects from, as for %s", s.Name, err, service, g)
		}
	}
	return true
}
