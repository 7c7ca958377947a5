package master

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/diag"
)

// masterNamesForTest reads what config.SetMasterNames wants from a
// master.cf: each service's command, and the $names its -o values refer
// to plus the names of an -o smtpd_restriction_classes. A throwaway
// reader for these tests only; serve and check get theirs from
// internal/mastercf.
func masterNamesForTest(t *testing.T, path string) (map[string]string, []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines (they start with blanks), drop comments.
	var entries []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") || strings.TrimSpace(l) == "" {
			continue
		}
		if (l[0] == ' ' || l[0] == '\t') && len(entries) > 0 {
			entries[len(entries)-1] += " " + strings.TrimSpace(l)
			continue
		}
		entries = append(entries, l)
	}
	ref := regexp.MustCompile(`\$[{(]?([A-Za-z0-9_]+)`)
	services := map[string]string{}
	var referenced []string
	for _, e := range entries {
		f := strings.Fields(e)
		if len(f) < 8 {
			continue
		}
		services[f[0]] = f[7]
		for i := 8; i+1 < len(f); i++ {
			if f[i] != "-o" {
				continue
			}
			name, value, _ := strings.Cut(f[i+1], "=")
			for _, m := range ref.FindAllStringSubmatch(value, -1) {
				referenced = append(referenced, m[1])
			}
			if name == "smtpd_restriction_classes" {
				referenced = append(referenced, strings.FieldsFunc(value, func(r rune) bool { return r == ',' || r == ' ' })...)
			}
		}
	}
	return services, referenced
}

// distroCheck loads testdata/distros/NAME as `mailtee check -c` would,
// with master.cf's names given as internal/mastercf will give them.
func distroCheck(t *testing.T, name string) diag.List {
	t.Helper()
	dir := filepath.Join("testdata", "distros", name)
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetMasterNames(masterNamesForTest(t, filepath.Join(dir, "master.cf")))
	return checkAll(cfg)
}

// kinds sums up findings as "severity subject", the subject being what
// precedes a message's first ": " (a parameter, or a feature such as
// postscreen). Findings about files of the distribution's own host
// (tables, certificates, /etc/mailname: "no such file or directory")
// and infos are left out: they depend on the machine the test runs on.
func kinds(l diag.List) []string {
	var out []string
	for _, d := range l {
		if d.Severity == diag.Info || strings.Contains(d.Msg, "no such file or directory") {
			continue
		}
		subject, _, _ := strings.Cut(d.Msg, ": ")
		out = append(out, d.Severity.String()+" "+subject)
	}
	sort.Strings(out)
	return out
}
