package config

import (
	"os/exec"
	"strings"
	"testing"
)

// The configuration reads main.cf and checks values; it must not pull in
// the lookup tables (issue 13): whoever needs a table opens it from what
// config returns. go list -deps sees indirect imports too.
func TestNoTableImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"/internal/maps", "/internal/retrans"} {
			if strings.HasSuffix(dep, bad) {
				t.Errorf("internal/config depends on %s", dep)
			}
		}
	}
}
