package master

import (
	"strings"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/mastercf"
)

// ignoredOverrideFindings are the findings about a delivery service's -o
// overrides that mailtee does not honour for it. Checked as main.cf's
// settings are, one that main.cf could not set either without an
// error (a feature mailtee lacks whose absence changes whether mail is
// delivered: -o smtp_sasl_auth_enable=yes towards a relay that demands
// AUTH, -o smtp_tls_wrappermode=yes towards port 465) is that error,
// one per feature; the rest are a warning each, as before.
func ignoredOverrideFindings(sc *config.Config, mf *mastercf.File, s *mastercf.Service, ignored []mastercf.Override) diag.List {
	if len(ignored) == 0 {
		return nil
	}
	var out diag.List
	var settings []config.Setting
	for _, o := range ignored {
		// A name neither Postfix nor mailtee has is postconf's "unused
		// parameter", a warning as before, not check's unknown name.
		if config.Known(o.Name) {
			settings = append(settings, config.Setting{Name: o.Name, Value: o.Value, Line: o.Line})
		}
	}
	var errs diag.List
	for _, f := range sc.CheckSettings(settings) {
		if f.Severity == diag.Error {
			f.File, f.Msg = mf.Path, "service "+s.Name+" ("+s.Program()+"): -o "+f.Msg
			errs = append(errs, f)
		}
	}
	out = append(out, errs...)
	for _, o := range ignored {
		if covered(errs, o) {
			continue
		}
		out.Warnf(mf.Path, o.Line, "service %s (%s): -o %s=%s is not honoured: mailtee delivers for this transport with main.cf's settings", s.Name, s.Program(), o.Name, o.Value)
	}
	return out
}

// covered says whether an error already names override o.
func covered(errs diag.List, o mastercf.Override) bool {
	for _, e := range errs {
		if e.Line == o.Line || strings.Contains(e.Msg, o.Name) {
			return true
		}
	}
	return false
}
