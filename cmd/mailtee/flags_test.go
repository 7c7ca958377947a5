package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 13, defect 5: "mailtee queue list -c DIR" showed the queue of
// /etc/postfix ("Mail queue is empty" while DIR's was full) because Go's
// flag stops at the first operand. Options go anywhere, as with getopt(3).
func TestFlagsAfterOperands(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = h.example.com\nalias_maps =\nqueue_directory = "+dir+"/q\nmydestination = $myhostname\n"), 0o644)
	table := filepath.Join(dir, "t")
	os.WriteFile(table, []byte("k v\n"), 0o644)
	// Without -c, mailtee would read a main.cf that is not there.
	t.Setenv("MAIL_CONFIG", filepath.Join(dir, "nowhere"))
	for _, tc := range []struct {
		args []string
		out  string
	}{
		{[]string{"queue", "list", "-c", dir}, "Mail queue is empty\n"},
		{[]string{"queue", "list", "-c" + dir}, "Mail queue is empty\n"},
		{[]string{"postconf", "mydestination", "-c", dir, "-xh"}, "h.example.com\n"},
		{[]string{"postconf", "-h", "mydestination", "-x", "--", "myhostname"}, ""}, // no -c: MAIL_CONFIG's
		{[]string{"postmap", "texthash:" + table, "-q", "k", "-c", dir}, "v\n"},
		{[]string{"postmap", "-s", "texthash:" + table, "-c=" + dir}, "k\tv\n"},
		// Long forms, the value in the next argument ("--since T").
		{[]string{"postmap", "texthash:" + table, "--q", "k", "--c", dir}, "v\n"},
	} {
		code, out, errs := mailtee(t, "", tc.args...)
		want := exitOK
		if tc.out == "" {
			want = exitBadData
		}
		if code != want || out != tc.out {
			t.Errorf("%q: exit %d, out %q, stderr %q; want %d, %q", tc.args, code, out, errs, want, tc.out)
		}
	}
	if code, out, _ := mailtee(t, "", "check", "-c", dir); code != exitOK || !strings.Contains(out, "0 error(s)") {
		t.Errorf("check: exit %d\n%s", code, out)
	}
}

// What a command does not understand is refused with its usage, never
// ignored: an extra operand, an unknown option, a missing value.
func TestFlagsRefused(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("myhostname = h.example.com\nqueue_directory = "+dir+"/q\n"), 0o644)
	for _, args := range [][]string{
		{"queue", "list", "extra", "-c", dir},
		{"queue", "flush", "-c", dir, "extra"},
		{"queue", "-c", dir, "hold"},
		{"queue", "list", "-z", "-c", dir},
		{"check", "-c", dir, "extra"},
		{"check", "extra", "-c", dir},
		{"check", "-c", filepath.Join(dir, "nowhere"), "extra"},
		{"queue", "-c", dir, "delete", "ID", "ID2"},
		{"reload", "-c", dir, "now"},
		{"serve", "-c", dir, "-x"},
		{"postconf", "-c", dir, "-nz"},
		{"postconf", "-c"},
		{"postmap", "-c", dir},
		{"postalias", "-c", dir, "-q"},
	} {
		code, out, errs := mailtee(t, "", args...)
		if code != exitBadData || out != "" || !strings.Contains(errs, "usage: mailtee "+args[0]) {
			t.Errorf("%q: exit %d, out %q, stderr %q; want exit 1 and the usage", args, code, out, errs)
		}
	}
}
