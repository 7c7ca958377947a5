package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/users"
)

// NSSAccounts lists every account the name service switch can enumerate,
// as `getent passwd` does: /etc/passwd, libnss-extrausers, and LDAP or
// SSSD where they allow enumeration (SSSD only with enumerate = true). An
// account found twice is kept as the first source has it, as getpwnam(3)
// would return it. internal/users looks accounts up one by one and has
// nothing to list them; getent is the one interface every source shares.
func NSSAccounts(ctx context.Context) ([]users.User, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "getent", "passwd")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("getent passwd: no answer from the name service in 2 minutes")
		}
		return nil, fmt.Errorf("getent passwd: %v %s (check the passwd line of /etc/nsswitch.conf)", err, strings.TrimSpace(errb.String()))
	}
	return ParsePasswd(out.String())
}

// ParsePasswd reads passwd(5) lines, as getent prints them. NIS compat
// lines ("+", "+@group", "-name") are not accounts and are skipped; any
// other line that is not a passwd entry is an error, since a listing we
// cannot read would make mailboxes silently missing.
func ParsePasswd(text string) ([]users.User, error) {
	var out []users.User
	seen := map[string]bool{}
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" || line[0] == '+' || line[0] == '-' {
			continue
		}
		u, err := users.ParsePasswdLine(line)
		if err != nil {
			return nil, fmt.Errorf("getent passwd, line %d: %w", n+1, err)
		}
		if seen[u.Name] {
			continue
		}
		seen[u.Name] = true
		out = append(out, u)
	}
	return out, nil
}

// ShellsFile is the list of login shells, shells(5).
const ShellsFile = "/etc/shells"

// LoginShells reads shells(5). Without the file, getusershell(3) takes
// /bin/sh and /bin/csh as the login shells, and so do we.
func LoginShells(file string) (map[string]bool, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{"/bin/sh": true, "/bin/csh": true}, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseShells(string(data)), nil
}

// ParseShells reads the text of shells(5): one absolute path a line,
// '#' comments, blank lines ignored; getusershell(3) takes the first word
// of a line that starts with '/'.
func ParseShells(text string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], "/") {
			continue
		}
		out[f[0]] = true
	}
	return out
}

// noLogin are the shells that refuse a login, whatever /etc/shells says
// (Debian lists none of them there, but some sites add /bin/false for
// FTP-only accounts: they still are no mailbox owners of ours).
var noLogin = map[string]bool{
	"/usr/sbin/nologin": true, "/sbin/nologin": true,
	"/bin/false": true, "/usr/bin/false": true,
	"/bin/true": true, "/usr/bin/true": true,
	"/bin/sync": true,
}

// Nobody is the uid of the overflow account, nobody(65534).
const Nobody = 65534
