package mastercf

import (
	"sort"

	"github.com/mailtee/mailtee/internal/config"
)

// ServiceNames are the names of master.cf's services, sorted, each once:
// with a type suffix in Postfix's per-service parameter names
// (NAME_destination_concurrency_limit and the like) and as transports.
func (f *File) ServiceNames() []string {
	if f == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, s := range f.Services {
		if !seen[s.Name] {
			seen[s.Name] = true
			out = append(out, s.Name)
		}
	}
	sort.Strings(out)
	return out
}

// ReferencedParams are the parameter names that master.cf's overrides
// set (-o name=...) or refer to ($name, ${name}, $(name) in a value),
// sorted, each once: names that main.cf may define as user-defined
// parameters, as postconf(1) counts them.
func (f *File) ReferencedParams() []string {
	if f == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, s := range f.Services {
		for _, o := range s.Overrides {
			add(o.Name)
			for _, r := range config.References(o.Value) {
				add(r)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Names are the service names and the parameter names referenced from
// DIR/master.cf (ServiceNames, ReferencedParams); nil, nil without one or
// when it cannot be read (check reports that).
func Names(dir string) (services, params []string) {
	f, _, err := Load(dir)
	if err != nil || f == nil {
		return nil, nil
	}
	return f.ServiceNames(), f.ReferencedParams()
}
