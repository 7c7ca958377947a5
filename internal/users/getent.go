package users

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// getentPath is getent's absolute path, found while PATH is still there:
// serve keeps only import_environment's variables, as Postfix's master.
var getentPath = func() string {
	if p, err := exec.LookPath("getent"); err == nil {
		return p
	}
	return "/usr/bin/getent"
}()

// getentLookup asks getent(1), which calls getpwnam(3) in its own process.
// glibc's getent exits 0 with the passwd(5) line, 2 when getpwnam returned
// NULL, which is both "no such user" and a failed backend (getent.c
// ignores errno), and 1 for bad arguments. A name of digits only is taken
// by getent for a uid (getpwuid), so an entry whose name is not the one
// asked for is "no such user", as getpwnam would have said.
func getentLookup(name string) (User, bool, error) {
	u, ok, err := getent(name)
	if ok && u.Name != name {
		return User{}, false, nil
	}
	return u, ok, err
}

// getentLookupID asks getent(1) for a uid: a key of digits is a uid to it.
func getentLookupID(uid uint32) (User, bool, error) {
	u, ok, err := getent(strconv.FormatUint(uint64(uid), 10))
	if ok && u.UID != uid {
		return User{}, false, nil
	}
	return u, ok, err
}

// getent runs getent passwd KEY.
func getent(name string) (User, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	// "--" so that no name is read as an option.
	cmd := exec.CommandContext(ctx, getentPath, "passwd", "--", name)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return User{}, false, fmt.Errorf("getent passwd: %w", ctx.Err())
	case errors.As(err, &ee) && ee.ExitCode() == 2:
		return User{}, false, nil
	case err != nil:
		return User{}, false, fmt.Errorf("getent passwd: %w %s", err, strings.TrimSpace(errb.String()))
	}
	line, _, _ := strings.Cut(out.String(), "\n")
	u, err := ParsePasswdLine(line)
	if err != nil {
		return User{}, false, fmt.Errorf("getent passwd: %w", err)
	}
	return u, true, nil
}

// ParsePasswdLine parses one passwd(5) line,
// "name:password:UID:GID:GECOS:directory:shell".
func ParsePasswdLine(line string) (User, error) {
	f := strings.Split(line, ":")
	if len(f) != 7 {
		return User{}, fmt.Errorf("passwd line %q: %d fields, want 7", line, len(f))
	}
	uid, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil {
		return User{}, fmt.Errorf("passwd line %q: uid: %w", line, err)
	}
	gid, err := strconv.ParseUint(f[3], 10, 32)
	if err != nil {
		return User{}, fmt.Errorf("passwd line %q: gid: %w", line, err)
	}
	if f[0] == "" {
		return User{}, fmt.Errorf("passwd line %q: empty name", line)
	}
	return User{Name: f[0], UID: uint32(uid), GID: uint32(gid), Home: f[5], Shell: f[6]}, nil
}
