package preflight_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/master"
	"github.com/mailtee/mailtee/internal/preflight"
)

// build writes main.cf (after a few lines every case needs) and files
// into a directory and builds preflight's options from it as the
// command does.
func build(t *testing.T, mainCf string, files map[string]string, set preflight.Settings) preflight.Options {
	t.Helper()
	dir := t.TempDir()
	base := "myhostname = mx.students.example\nmydestination = $myhostname, students.example, localhost\n" +
		"queue_directory = " + dir + "/queue\ndata_directory = " + dir + "/data\nalias_maps =\n"
	files["main.cf"] = base + mainCf
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	diags, opened := master.Check(cfg)
	if diags.HasErrors() {
		t.Fatalf("check: %v", diags)
	}
	router, err := master.Router(cfg, opened)
	if err != nil {
		t.Fatal(err)
	}
	o, err := preflight.FromConfig(context.Background(), cfg, opened, router, set)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func users(d *preflight.Destination) string {
	var s []string
	for _, u := range d.Users {
		s = append(s, u.Key+">"+u.Addr)
	}
	return strings.Join(s, " ")
}

// copy_transport sends every copy of both maps to one destination, even
// for an address in a local domain.
func TestFromConfigCopyTransport(t *testing.T) {
	o := build(t, "copy_transport = smtp:[aspmx.l.google.com]:2525\nmailbox_bcc_maps = hash:$config_directory/copies\n"+
		"recipient_bcc_maps = texthash:$config_directory/rcopies\nsmtp_bind_address = 192.0.2.7\n",
		map[string]string{"copies": "user1: user1@students.example\nuser2 user2@students.example\n", "rcopies": "list@students.example user3@students.example\n"},
		preflight.Settings{SendTest: "test@students.example"})
	if len(o.Destinations) != 1 {
		t.Fatalf("destinations %+v", o.Destinations)
	}
	d := o.Destinations[0]
	if d.Name() != "smtp:[aspmx.l.google.com]:2525" || d.MX || d.Port != 2525 || d.Host != "aspmx.l.google.com" || d.Bind != "192.0.2.7" || d.BindParam != "smtp_bind_address" {
		t.Errorf("destination %+v", d)
	}
	if got := users(d); got != "user1>user1@students.example user2>user2@students.example list@students.example>user3@students.example" {
		t.Errorf("users %s", got)
	}
	if o.SendTestDest != d || o.Sender != "postmaster@mx.students.example" {
		t.Errorf("send test by %+v, sender %s", o.SendTestDest, o.Sender)
	}
	if len(o.Rows) != 0 {
		t.Errorf("rows %+v", o.Rows)
	}
}

// Without copy_transport, a copy to a local domain is delivered here: a
// failure to report, not a destination to probe. A pattern table cannot
// be listed: a warning.
func TestFromConfigLocalCopyAndPatterns(t *testing.T) {
	o := build(t, "mailbox_bcc_maps = hash:$config_directory/copies, regexp:$config_directory/re\ntransport_maps = hash:$config_directory/transport\n",
		map[string]string{"copies": "user1 user1@students.example\nuser2 user2@relay.example\n", "re": "/^(.*)@x$/ $1@relay.example\n",
			"transport": "relay.example smtp:[10.0.0.2]\n"}, preflight.Settings{})
	if len(o.Destinations) != 1 || o.Destinations[0].Name() != "smtp:[10.0.0.2]" || users(o.Destinations[0]) != "user2>user2@relay.example" {
		t.Fatalf("destinations %+v", o.Destinations)
	}
	var route, list bool
	for _, r := range o.Rows {
		route = route || r.Check == "route" && r.Status == preflight.Fail && r.Target == "user1@students.example" && strings.Contains(r.Do, "copy_transport")
		list = list || r.Check == "copy-map" && r.Status == preflight.Warn && strings.Contains(r.Target, "regexp:")
	}
	if !route || !list {
		t.Errorf("rows %+v", o.Rows)
	}
}

// A dual_delivery_relay host checks the addresses it sends on: where its
// domain routes.
func TestFromConfigRelay(t *testing.T) {
	o := build(t, "dual_delivery_relay = yes\nvirtual_alias_maps = hash:$config_directory/user_maps\ntransport_maps = hash:$config_directory/transport\n",
		map[string]string{"user_maps": "user1@mx.students.example user1@google.example\nuser2@mx.students.example user2@google.example\npostmaster@mx.students.example root\n",
			"transport": "google.example smtp:aspmx.l.google.com\n"}, preflight.Settings{})
	if len(o.Destinations) != 1 || o.Destinations[0].Name() != "smtp:aspmx.l.google.com" || !o.Destinations[0].MX ||
		users(o.Destinations[0]) != "user1@mx.students.example>user1@google.example user2@mx.students.example>user2@google.example" {
		t.Fatalf("destinations %+v", o.Destinations)
	}
}

// No copy map at all is a failure with what to do.
func TestFromConfigNoCopyMap(t *testing.T) {
	o := build(t, "", map[string]string{}, preflight.Settings{})
	if len(o.Rows) != 1 || o.Rows[0].Status != preflight.Fail || !strings.Contains(o.Rows[0].Do, "mailtee migrate") {
		t.Errorf("rows %+v", o.Rows)
	}
}
