package master

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/diag"
)

// check on the one box's main.cf (issue 18): without copy_transport a
// copy to an address in mydestination is a warning at the copy map's
// line; copy_transport must name a delivery service of master.cf and
// not one that delivers here.
func TestCopyFindings(t *testing.T) {
	google := "google    unix  -       -       n       -       -       smtp\n"
	type finding struct {
		sev  diag.Severity
		file string
		line int
		text string
	}
	for _, c := range []struct {
		name, maincf, mastercf string
		want                   []finding
	}{
		{"local_copy_no_copy_transport", "", transportsCF,
			[]finding{{diag.Warning, "bcc", 2, "user1 -> user1@students.iiit.ac.in: the copy's address is delivered here (local:students.iiit.ac.in) and copy_transport is empty"}}},
		{"unknown_service", "copy_transport = google:[aspmx.l.google.com]\n", transportsCF,
			[]finding{{diag.Error, "main.cf", 8, `copy_transport: "google:[aspmx.l.google.com]": unknown mail transport "google"; mailtee delivers with discard, local, relay, smtp`}}},
		{"master_cf_google", "copy_transport = google:[aspmx.l.google.com]\n", transportsCF + google, nil},
		{"no_master_cf", "copy_transport = smtp:[aspmx.l.google.com]\n", "", nil},
		{"local_service", "copy_transport = local\n", transportsCF,
			[]finding{{diag.Error, "main.cf", 8, `copy_transport: "local" delivers on this host`}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			bcc := filepath.Join(t.TempDir(), "bcc")
			os.WriteFile(bcc, []byte("# the one box\nuser1:  user1@students.iiit.ac.in\nuser2:  user2@relay.students.iiit.ac.in\n"), 0o644)
			// main.cf's lines 1-3 are bindServer's.
			_, d := bindServer(t, "myhostname = students.iiit.ac.in\nmydestination = $myhostname, localhost\nlocal_transport = local:$myhostname\nmailbox_bcc_maps = hash:"+bcc+"\n"+c.maincf, c.mastercf)
			var got []diag.Diag
			for _, f := range d {
				if f.Severity == diag.Error || strings.Contains(f.Msg, "copy") {
					got = append(got, f)
				}
			}
			if len(got) != len(c.want) {
				t.Fatalf("findings %v, want %v", got, c.want)
			}
			for i, w := range c.want {
				f := got[i]
				if f.Severity != w.sev || filepath.Base(f.File) != w.file || f.Line != w.line || !strings.Contains(f.Msg, w.text) {
					t.Errorf("finding %v, want %v", f, w)
				}
			}
		})
	}
}
