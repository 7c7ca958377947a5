package local

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func ownerOf(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Sys().(*syscall.Stat_t)
	return s.Uid, s.Gid
}

// The spool's rules, as local(8)'s for a mailbox file: a missing mailbox
// is created as root and handed to its owner, with the spool's group when
// the spool is group-writable (Debian's /var/mail, root:mail 2775).
func TestSpoolMaildirCreatedForOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	alice := User{Name: "alice", UID: 4242, GID: 4343}
	for _, tc := range []struct {
		mode    os.FileMode
		wantGID uint32
	}{
		{0o755, 4343},
		{0o2775, 8}, // group-writable: the spool's group
		{0o1777, 4343},
	} {
		spool := t.TempDir()
		os.Chown(spool, 0, 8)
		os.Chmod(spool, tc.mode)
		dir := filepath.Join(spool, "alice") + "/"
		if err := spoolMaildir(dir, alice); err != nil {
			t.Fatalf("spool %v: %v", tc.mode, err)
		}
		uid, gid := ownerOf(t, dir)
		if uid != alice.UID || gid != tc.wantGID {
			t.Errorf("spool %v: maildir owned by %d:%d, want %d:%d", tc.mode, uid, gid, alice.UID, tc.wantGID)
		}
		if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
			t.Errorf("spool %v: maildir mode %v, want 0700", tc.mode, st.Mode().Perm())
		}
		// Again: it is there and hers.
		if err := spoolMaildir(dir, alice); err != nil {
			t.Errorf("second delivery: %v", err)
		}
	}
}

func TestSpoolMaildirRefusesWhatIsNotTheOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	alice := User{Name: "alice", UID: 4242, GID: 4343}
	spool := t.TempDir()
	target := t.TempDir()
	os.Symlink(target, filepath.Join(spool, "link"))
	os.Mkdir(filepath.Join(spool, "rootowned"), 0o700)
	os.WriteFile(filepath.Join(spool, "file"), nil, 0o600)
	os.Mkdir(filepath.Join(spool, "bobs"), 0o700)
	os.Chown(filepath.Join(spool, "bobs"), 5000, 5000)
	for name, want := range map[string]string{
		"link":      "symbolic link",
		"rootowned": "chown -R 4242:4343 " + filepath.Join(spool, "rootowned"),
		"file":      "not a directory",
		"bobs":      "owned by uid 5000",
	} {
		err := spoolMaildir(filepath.Join(spool, name)+"/", alice)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", name, err, want)
		}
	}
	if uid, _ := ownerOf(t, target); uid != 0 {
		t.Errorf("the link's target was given away to uid %d", uid)
	}
	if uid, _ := ownerOf(t, filepath.Join(spool, "rootowned")); uid != 0 {
		t.Errorf("an existing root-owned maildir was taken over silently (uid %d)", uid)
	}
}

func TestCheckMailboxes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	base := t.TempDir()
	os.Chmod(filepath.Dir(base), 0o755)
	os.Chmod(base, 0o700)
	spool := filepath.Join(base, "mail")
	os.Mkdir(spool, 0o777)
	os.Chmod(spool, 0o777)
	os.MkdirAll(filepath.Join(spool, "ghost", "new"), 0o700)
	os.MkdirAll(filepath.Join(spool, "alice", "new"), 0o700)
	os.Chown(filepath.Join(spool, "alice"), 4242, 4242)
	os.MkdirAll(filepath.Join(spool, "notamaildir"), 0o700)
	pw := &Passwd{byName: map[string]User{"alice": {Name: "alice", UID: 4242, GID: 4242}}}
	o := Options{SpoolDir: spool + "/", DefaultPrivs: User{Name: "nobody", UID: 65534, GID: 65534}}
	var got []string
	for _, f := range CheckMailboxes(o, pw) {
		got = append(got, f.Param+": "+f.Msg)
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		base + " cannot be passed through by other users (mode 0700)",
		"no sticky bit",
		"maildir " + filepath.Join(spool, "ghost") + " is owned by root, but mailtee writes mailboxes as their recipient, nobody (uid 65534)",
		"chown -R 65534:65534 " + filepath.Join(spool, "ghost"),
	} {
		if !strings.Contains(all, want) {
			t.Errorf("findings lack %q:\n%s", want, all)
		}
	}
	if len(got) != 3 {
		t.Errorf("%d findings, want 3 (alice's maildir is hers, notamaildir is none):\n%s", len(got), all)
	}
}

// Concurrent first deliveries to a new spool Maildir all see it their
// owner's: it is never visible still root's.
func TestSpoolMaildirConcurrentCreation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	alice := User{Name: "alice", UID: 4242, GID: 4343}
	for round := range 20 {
		spool := t.TempDir()
		dir := filepath.Join(spool, "alice") + "/"
		errs := make(chan error, 16)
		for range 16 {
			go func() { errs <- spoolMaildir(dir, alice) }()
		}
		for range 16 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if ents, _ := os.ReadDir(spool); len(ents) != 1 {
			t.Fatalf("round %d: %d entries in the spool, want 1 (no temporary left)", round, len(ents))
		}
	}
}
