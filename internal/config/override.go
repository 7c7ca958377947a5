package config

import "github.com/mailtee/mailtee/internal/diag"

// WithOverrides returns a copy of c as a daemon that master(8) starts
// with master.cf's "-o name=value" options reads it: each setting
// replaces main.cf's (mail_conf_update in single_server.c), its value
// kept raw and expanded when read, so "$name" in it refers to main.cf's
// value or another override's. service_name and process_name are the
// service's, as the daemon sets them. Lines stay those of master.cf;
// File stays main.cf.
func (c *Config) WithOverrides(service, process string, ov []Setting) *Config {
	st := &Config{Dir: c.Dir, File: c.File, machine: c.machine, userDefs: c.userDefs, services: c.services,
		set: make(map[string]Setting, len(c.set)+len(ov)+2)}
	for k, v := range c.set {
		st.set[k] = v
	}
	st.set["service_name"] = Setting{Name: "service_name", Value: service}
	st.set["process_name"] = Setting{Name: "process_name", Value: process}
	for _, s := range ov {
		st.set[s.Name] = s
	}
	return st
}

// CheckSettings validates settings of c as Check does the lines of
// main.cf: whether mailtee honours each parameter, and its value
// (expanded in c); a feature mailtee lacks is one finding for all its
// settings. Findings carry c.File; callers that check master.cf
// overrides replace it.
func (c *Config) CheckSettings(ss []Setting) diag.List {
	var out diag.List
	var feats featureUse
	for _, s := range ss {
		c.checkSetting(s, &out, &feats)
	}
	feats.report(c.File, &out)
	return out
}
