package userstest_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/mailtee/mailtee/internal/users/userstest"
)

func TestWithModule(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"passwd:         files systemd\ngroup:          files systemd\nshadow: files\n",
			"passwd:         files systemd extrausers\ngroup:          files systemd extrausers\nshadow: files\n"},
		{"passwd: files extrausers\ngroup: extrausers files\n", "passwd: files extrausers\ngroup: extrausers files\n"},
		{"# passwd: nis\npasswd: compat", "# passwd: nis\npasswd: compat extrausers\ngroup: files extrausers\n"},
		{"", "passwd: files extrausers\ngroup: files extrausers\n"},
	} {
		got, _ := userstest.WithModule([]byte(tc.in), "extrausers")
		if string(got) != tc.want {
			t.Errorf("WithModule(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// The files AddNSSUser changes are back, byte for byte, once the test
// that used it is over.
func TestRestores(t *testing.T) {
	before := map[string][]byte{}
	paths := []string{userstest.NSSwitch, userstest.Dir + "/passwd", userstest.Dir + "/group"}
	for _, p := range paths {
		before[p], _ = os.ReadFile(p)
	}
	var changed bool
	t.Run("add", func(t *testing.T) {
		userstest.AddNSSUser(t, "mtrestore", 61250, 61250, "/nonexistent")
		b, _ := os.ReadFile(userstest.NSSwitch)
		changed = !bytes.Equal(b, before[userstest.NSSwitch]) || bytes.Contains(b, []byte("extrausers"))
	})
	if !changed {
		t.Skip("AddNSSUser skipped or changed nothing")
	}
	for _, p := range paths {
		b, _ := os.ReadFile(p)
		if !bytes.Equal(b, before[p]) {
			t.Errorf("%s not restored:\n%s\nwas:\n%s", p, b, before[p])
		}
	}
}
