package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/users"
)

// The exit statuses: 1 for bad input, 2 when the name service fails.
func TestMigrateExitCodes(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("mydestination = example.com\nmyorigin = example.com\nalias_maps = hash:$config_directory/aliases\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "aliases"), []byte("staff: ann, bob\n"), 0o644)
	old := migrateAccounts
	defer func() { migrateAccounts = old }()
	migrateAccounts = func(context.Context) ([]users.User, error) {
		return []users.User{{Name: "ann", UID: 1000, Shell: "/bin/sh"}, {Name: "bob", UID: 1001, Shell: "/bin/sh"}}, nil
	}
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"-c", dir, "--copy-to", "%u@relay.example.com"}, exitOK, "ann@example.com   ann@relay.example.com\nbob@example.com   bob@relay.example.com\n"},
		{[]string{"-c", dir, "--copy-to=%u@relay.example.com", "--postfix"}, exitOK, "ann: \\ann, ann@relay.example.com\nbob: \\bob, bob@relay.example.com\n"},
		{[]string{"-c", dir}, exitBadData, ""},
		{[]string{"-c", dir, "--copy-to", "relay.example.com"}, exitBadData, ""},
		{[]string{"-c", dir, "--copy-to", "%u@x.example", "extra"}, exitBadData, ""},
		{[]string{"-c", filepath.Join(dir, "none"), "--copy-to", "%u@x.example"}, exitBadData, ""},
	} {
		var out, errb bytes.Buffer
		code := runMigrate(tc.args, &out, &errb)
		if code != tc.code {
			t.Errorf("%q: exit %d, want %d\n%s", tc.args, code, tc.code, errb.String())
		}
		if tc.out != "" {
			var body []string
			for _, l := range strings.SplitAfter(out.String(), "\n") {
				if !strings.HasPrefix(l, "#") {
					body = append(body, l)
				}
			}
			if got := strings.Join(body, ""); got != tc.out {
				t.Errorf("%q: output %q, want %q", tc.args, got, tc.out)
			}
		}
	}
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "main.cf"), []byte("mydestination = example.com\nthis line is bad\n"), 0o644)
	var bout, berr bytes.Buffer
	if code := runMigrate([]string{"-c", bad, "--copy-to", "%u@x.example"}, &bout, &berr); code != exitBadData || !strings.Contains(berr.String(), "main.cf, line 2") {
		t.Errorf("a bad main.cf: exit %d, want %d naming main.cf, line 2\n%s", code, exitBadData, berr.String())
	}
	migrateAccounts = func(context.Context) ([]users.User, error) { return nil, errors.New("getent passwd: exit status 1") }
	var out, errb bytes.Buffer
	if code := runMigrate([]string{"-c", dir, "--copy-to", "%u@x.example"}, &out, &errb); code != exitRuntime || !strings.Contains(errb.String(), "getent") {
		t.Errorf("a failing name service: exit %d, want %d\n%s", code, exitRuntime, errb.String())
	}
}
