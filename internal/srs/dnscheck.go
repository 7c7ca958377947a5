package srs

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/mailtee/mailtee/internal/dnsresolve"
)

// Level of a Finding.
type Level string

const (
	OK   Level = "ok"
	Warn Level = "warn"
	Fail Level = "fail"
)

// Finding is one result of CheckDNS: what was found, and what to do
// when it is not OK.
type Finding struct {
	Check string // "mx" or "spf"
	Level Level
	Text  string
	Fix   string
}

// Resolver is what CheckDNS asks of the DNS (dnsresolve.Resolver).
type Resolver interface {
	MXHosts(ctx context.Context, domain string) ([]string, error)
	Hosts(ctx context.Context, nexthop string, useMX bool) ([]dnsresolve.Host, error)
	TXT(ctx context.Context, name string) ([]string, error)
}

// CheckDNS checks, for mailtee preflight, that srs_domain works for the
// host whose source addresses are hostAddrs: its MX points at this host
// (bounces to SRS addresses must come back here), and its SPF record
// allows this host (the provider checks SPF against the SRS sender's
// domain). SPF is evaluated for ip4:, ip6:, a, mx, all and redirect=,
// and include: one level deep (an include inside an include, exists:
// and ptr are not followed and are reported as such).
func CheckDNS(ctx context.Context, r Resolver, domain string, hostAddrs []netip.Addr) []Finding {
	var out []Finding
	out = append(out, checkMX(ctx, r, domain, hostAddrs)...)
	out = append(out, checkSPF(ctx, r, domain, hostAddrs)...)
	return out
}

func checkMX(ctx context.Context, r Resolver, domain string, hostAddrs []netip.Addr) []Finding {
	fix := fmt.Sprintf("publish %s. MX 10 <this host's name>, a name whose A/AAAA are %s", domain, addrList(hostAddrs))
	names, err := r.MXHosts(ctx, domain)
	if err != nil {
		return []Finding{{"mx", Fail, fmt.Sprintf("srs_domain %s: MX lookup: %v: bounces to SRS addresses cannot reach this host", domain, err), fix}}
	}
	if len(names) == 0 {
		// Mail then goes to the domain's own address (RFC 5321 5.1).
		hosts, err := r.Hosts(ctx, domain, false)
		if err == nil && len(hosts) > 0 && anyIn(hosts[0].Addrs, hostAddrs) {
			return []Finding{{"mx", Warn, fmt.Sprintf("srs_domain %s has no MX record; its own address %s is this host, so bounces arrive, but some providers send no mail to a domain without MX", domain, addrList(hosts[0].Addrs)), fix}}
		}
		return []Finding{{"mx", Fail, fmt.Sprintf("srs_domain %s has no MX record pointing at this host: bounces to SRS addresses are lost", domain), fix}}
	}
	var here, elsewhere []string
	for i, n := range names {
		hs, err := r.Hosts(ctx, n, false)
		if err != nil || len(hs) == 0 {
			elsewhere = append(elsewhere, n+" (no address)")
			continue
		}
		if anyIn(hs[0].Addrs, hostAddrs) {
			if i > 0 && len(here) == 0 {
				return []Finding{{"mx", Warn, fmt.Sprintf("srs_domain %s: this host is MX %s, but %s is preferred: bounces go there first, and must be passed on here", domain, n, strings.Join(elsewhere, ", ")),
					"make this host the only (or the most preferred) MX of " + domain}}
			}
			here = append(here, n)
			continue
		}
		elsewhere = append(elsewhere, n+" "+addrList(hs[0].Addrs))
	}
	if len(here) == 0 {
		return []Finding{{"mx", Fail, fmt.Sprintf("srs_domain %s: its MX %s is not this host (%s): bounces to SRS addresses go there and are not decoded", domain, strings.Join(elsewhere, ", "), addrList(hostAddrs)), fix}}
	}
	return []Finding{{"mx", OK, fmt.Sprintf("srs_domain %s: MX %s is this host", domain, strings.Join(here, ", ")), ""}}
}

// spfResult is what one address gets from a record.
type spfResult struct {
	qual  byte   // '+', '-', '~', '?'; 0: no mechanism matched
	mech  string // the mechanism that matched
	notes []string
}

func checkSPF(ctx context.Context, r Resolver, domain string, hostAddrs []netip.Addr) []Finding {
	fixFor := func() string {
		var mechs []string
		for _, a := range hostAddrs {
			if a.Is4() {
				mechs = append(mechs, "ip4:"+a.String())
			} else {
				mechs = append(mechs, "ip6:"+a.String())
			}
		}
		return fmt.Sprintf("publish %s. TXT \"v=spf1 %s -all\"", domain, strings.Join(mechs, " "))
	}
	rec, err := spfRecord(ctx, r, domain)
	if err != nil {
		return []Finding{{"spf", Fail, fmt.Sprintf("srs_domain %s: SPF: %v; the provider checks SPF against the SRS sender's domain, so copies fail it", domain, err), fixFor()}}
	}
	var out []Finding
	for _, a := range hostAddrs {
		res := evalSPF(ctx, r, domain, rec, a, 0)
		note := ""
		if len(res.notes) > 0 {
			note = " (" + strings.Join(res.notes, "; ") + ")"
		}
		switch res.qual {
		case '+':
			out = append(out, Finding{"spf", OK, fmt.Sprintf("srs_domain %s: SPF allows %s (%s)%s", domain, a, res.mech, note), ""})
		case 0:
			out = append(out, Finding{"spf", Warn, fmt.Sprintf("srs_domain %s: SPF says nothing of %s (neutral)%s: some providers treat that as a failure", domain, a, note), fixFor()})
		case '?':
			out = append(out, Finding{"spf", Warn, fmt.Sprintf("srs_domain %s: SPF is neutral for %s (%s)%s", domain, a, res.mech, note), fixFor()})
		default:
			out = append(out, Finding{"spf", Fail, fmt.Sprintf("srs_domain %s: SPF %s %s (%s)%s: copies from this address fail SPF at the provider", domain,
				map[byte]string{'-': "fails", '~': "soft-fails"}[res.qual], a, res.mech, note), fixFor()})
		}
	}
	return out
}

// spfRecord is domain's one SPF record (RFC 7208 4.5: none or several
// are errors here).
func spfRecord(ctx context.Context, r Resolver, domain string) (string, error) {
	txts, err := r.TXT(ctx, domain)
	if err != nil {
		return "", err
	}
	var recs []string
	for _, t := range txts {
		if l := strings.ToLower(t); l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ") {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return "", fmt.Errorf("no SPF record (TXT \"v=spf1 ...\")")
	case 1:
		return recs[0], nil
	}
	return "", fmt.Errorf("%d SPF records (a permanent error, RFC 7208 4.5)", len(recs))
}

// evalSPF evaluates record rec of domain for addr; depth counts
// include:/redirect= levels (one is followed).
func evalSPF(ctx context.Context, r Resolver, domain, rec string, addr netip.Addr, depth int) spfResult {
	var res spfResult
	redirect := ""
	for _, term := range strings.Fields(rec)[1:] {
		lt := strings.ToLower(term)
		if strings.HasPrefix(lt, "redirect=") {
			redirect = term[len("redirect="):]
			continue
		}
		if strings.Contains(lt, "=") && !strings.Contains(lt, ":") {
			continue // a modifier (exp=)
		}
		qual := byte('+')
		if strings.IndexByte("+-~?", term[0]) >= 0 {
			qual, term, lt = term[0], term[1:], lt[1:]
		}
		name, arg, _ := strings.Cut(term, ":")
		name = strings.ToLower(name)
		// a and mx take "a", "a/24", "a:host", "a:host/24//64".
		cidr := ""
		if n, c, ok := strings.Cut(name, "/"); ok {
			name, cidr = n, "/"+c
		} else if h, c, ok := strings.Cut(arg, "/"); ok && (name == "a" || name == "mx") {
			arg, cidr = h, "/"+c
		}
		matched := false
		switch name {
		case "all":
			matched = true
		case "ip4", "ip6":
			matched = cidrHas(arg, addr)
		case "a", "mx":
			target := domain
			if arg != "" {
				target = arg
			}
			l4, l6 := cidrLens(cidr)
			var hosts []string
			if name == "mx" {
				hosts, _ = r.MXHosts(ctx, target)
			} else {
				hosts = []string{target}
			}
			for _, h := range hosts {
				hs, err := r.Hosts(ctx, h, false)
				if err != nil || len(hs) == 0 {
					continue
				}
				for _, a := range hs[0].Addrs {
					bits := l4
					if a.Is6() {
						bits = l6
					}
					if a.Is4() == addr.Is4() {
						if p, err := a.Prefix(bits); err == nil && p.Contains(addr) {
							matched = true
						}
					}
				}
			}
		case "include":
			if depth > 0 {
				res.notes = append(res.notes, "include:"+arg+" inside an include is not followed")
				continue
			}
			inc, err := spfRecord(ctx, r, arg)
			if err != nil {
				res.notes = append(res.notes, "include:"+arg+": "+err.Error())
				continue
			}
			sub := evalSPF(ctx, r, arg, inc, addr, depth+1)
			res.notes = append(res.notes, sub.notes...)
			matched = sub.qual == '+' // include matches on the included pass only
		case "exists", "ptr":
			res.notes = append(res.notes, name+" is not evaluated")
			continue
		default:
			res.notes = append(res.notes, "unknown mechanism "+name)
			continue
		}
		if matched {
			res.qual, res.mech = qual, string(qual)+term
			if qual == '+' {
				res.mech = term
			}
			return res
		}
	}
	if redirect != "" {
		if depth > 0 {
			res.notes = append(res.notes, "redirect="+redirect+" inside an include is not followed")
			return res
		}
		red, err := spfRecord(ctx, r, redirect)
		if err != nil {
			res.notes = append(res.notes, "redirect="+redirect+": "+err.Error())
			return res
		}
		sub := evalSPF(ctx, r, redirect, red, addr, depth+1)
		sub.notes = append(res.notes, sub.notes...)
		return sub
	}
	return res
}

// cidrLens reads SPF's dual-cidr-length ("", "/24", "//64",
// "/24//64"): the prefix lengths for IPv4 and IPv6 (32 and 128 when
// absent).
func cidrLens(c string) (l4, l6 int) {
	l4, l6 = 32, 128
	v4, v6, _ := strings.Cut(strings.TrimPrefix(c, "/"), "//")
	if strings.HasPrefix(c, "//") {
		v4, v6 = "", strings.TrimPrefix(c, "//")
	}
	if n, err := strconv.Atoi(v4); err == nil && n >= 0 && n <= 32 {
		l4 = n
	}
	if n, err := strconv.Atoi(v6); err == nil && n >= 0 && n <= 128 {
		l6 = n
	}
	return l4, l6
}

func cidrHas(s string, addr netip.Addr) bool {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		return err == nil && a.Unmap() == addr.Unmap()
	}
	p, err := netip.ParsePrefix(s)
	return err == nil && p.Masked().Contains(addr.Unmap())
}

func anyIn(addrs, host []netip.Addr) bool {
	for _, a := range addrs {
		if slices.Contains(host, a.Unmap()) {
			return true
		}
	}
	return false
}

func addrList(addrs []netip.Addr) string {
	var s []string
	for _, a := range addrs {
		s = append(s, a.String())
	}
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}
