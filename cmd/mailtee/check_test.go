package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 13, defect 6: a mysql: table in virtual_alias_maps was reported
// under virtual_alias_domains (whose default is $virtual_alias_maps),
// without a line. It is reported once, under the line that names it.
func TestCheckCreditsTableToItsParameter(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = h.example.com\nalias_maps =\nvirtual_alias_maps = mysql:/etc/postfix/virtual.cf\n"), 0o644)
	code, out, _ := mailtee(t, "", "check", "-c", dir)
	want := "main.cf, line 3: virtual_alias_maps: unsupported table type \"mysql\""
	if code != exitBadData || strings.Count(out, want) != 1 || strings.Contains(out, "virtual_alias_domains") || strings.Count(out, "mysql") != 1 {
		t.Errorf("exit %d; want 1 and %q once, nothing else about it:\n%s", code, want, out)
	}
}
