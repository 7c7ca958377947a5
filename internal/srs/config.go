package srs

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
)

// ParseSecrets reads the secrets of an srs_secret_file as postsrsd does:
// one a line, CR and LF stripped (nothing else: blanks belong to the
// secret), empty lines skipped. The first signs; every one verifies,
// so that a new secret goes on the first line and the old one stays
// below it for as long as its addresses may come back (MaxAge days).
func ParseSecrets(data []byte) [][]byte {
	var out [][]byte
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		line = bytes.TrimRight(line, "\r")
		if len(line) > 0 {
			out = append(out, bytes.Clone(line))
		}
	}
	return out
}

// ReadSecrets reads srs_secret_file; a file without a secret is an error.
func ReadSecrets(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := ParseSecrets(data)
	if len(s) == 0 {
		return nil, fmt.Errorf("%s: no secret in it (one a line, the first signs)", path)
	}
	return s, nil
}

// Load is the Codec main.cf configures, nil when srs_domain is empty
// (SRS off, the default).
func Load(cfg *config.Config) (*Codec, error) {
	domain := cfg.Get("srs_domain")
	if domain == "" {
		return nil, nil
	}
	file := cfg.Get("srs_secret_file")
	if file == "" {
		return nil, fmt.Errorf("srs_domain is set and srs_secret_file is not")
	}
	s, err := ReadSecrets(file)
	if err != nil {
		return nil, fmt.Errorf("srs_secret_file: %w", err)
	}
	return New(domain, s), nil
}

// DomainClass says which of mydestination, virtual_alias_domains,
// relay_domains matches a domain ("" none), for Check.
type DomainClass func(domain string) (param string, err error)

// Check reports what is wrong with the SRS settings of cfg.
//
// srs_domain may be a domain of its own (bounces.example.com, the
// advice) or one mailtee has already (postsrsd sites often use their own
// domain): there, local parts that look like SRS are taken by SRS and
// refused unless valid, the others are mail for that domain as before.
// In relay_domains or virtual_alias_domains that split is a warning, not
// an error: relay_domains' default ($mydestination, subdomains included)
// takes bounces.example.com for a relay domain of example.com, and
// nothing is lost, but the administrator should know that only the SRS
// addresses there are answered here.
func Check(cfg *config.Config, class DomainClass) diag.List {
	var out diag.List
	domain := cfg.Get("srs_domain")
	file := cfg.Get("srs_secret_file")
	line := func(p string) int { s, _ := cfg.Set(p); return s.Line }
	if domain == "" {
		if file != "" {
			out.Warnf(cfg.File, line("srs_secret_file"), "srs_secret_file is set but srs_domain is not: SRS is off, the secret is unused; set srs_domain to turn it on")
			// Read anyway: the file is wrong now, not when SRS is
			// turned on during a migration.
			checkSecretFile(cfg, file, line("srs_secret_file"), &out)
		}
		return out
	}
	dl := line("srs_domain")
	if _, err := address.Parse("<x@" + domain + ">"); err != nil || strings.ContainsAny(domain, " ,[]") || domain != strings.TrimSpace(domain) {
		out.Errorf(cfg.File, dl, "srs_domain = %s: not a domain name; set it to a domain whose MX is this host (bounces.example.com)", domain)
		return out
	}
	if class != nil {
		if p, err := class(address.NormalizeDomain(domain)); err == nil && (p == "relay_domains" || p == "virtual_alias_domains") {
			out.Warnf(cfg.File, dl, "srs_domain = %s is also in %s: its SRS addresses are answered here, any other address at it follows %s; give SRS a domain of its own (its MX this host) unless that is what you want", domain, p, p)
		}
	}
	if file == "" {
		out.Errorf(cfg.File, dl, "srs_domain is set and srs_secret_file is not; create one: head -c 24 /dev/urandom | base64 > /etc/mailtee/srs.secret; chmod 600 /etc/mailtee/srs.secret; and set srs_secret_file to it")
		return out
	}
	checkSecretFile(cfg, file, line("srs_secret_file"), &out)
	return out
}

// checkSecretFile reports what is wrong with srs_secret_file file, set
// on main.cf's line fl.
func checkSecretFile(cfg *config.Config, file string, fl int, out *diag.List) {
	data, err := os.ReadFile(file)
	if err != nil {
		out.Errorf(cfg.File, fl, "srs_secret_file: %v; create it with one random secret a line (head -c 24 /dev/urandom | base64 > %s), readable by mailtee only", err, file)
		return
	}
	secrets := ParseSecrets(data)
	if len(secrets) == 0 {
		out.Errorf(file, 1, "no secret in srs_secret_file (empty or blank lines only); put a random secret on the first line (head -c 24 /dev/urandom | base64)")
		return
	}
	if fi, err := os.Stat(file); err == nil && fi.Mode().Perm()&0o077 != 0 {
		out.Warnf(file, 0, "srs_secret_file is readable or writable by others (mode %04o): whoever reads it can forge bounces that mailtee accepts; chmod 600 %s", fi.Mode().Perm(), file)
	}
	if len(secrets[0]) < 16 {
		out.Warnf(file, 1, "the signing secret is %d bytes: use at least 16 random bytes (head -c 24 /dev/urandom | base64)", len(secrets[0]))
	}
}
