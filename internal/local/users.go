package local

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/mailtee/mailtee/internal/users"
)

// Passwd is a passwd(5) file read whole, for what must list every user
// (`mailtee check` looking at each home's Maildir). Delivery asks NSS
// for one user at a time instead (Options.Users).
type Passwd struct {
	byName map[string]User
	all    []User
}

// ReadPasswd reads a passwd(5) file. Lines that do not parse are skipped,
// as getpwnam(3) skips them.
func ReadPasswd(path string) (*Passwd, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p := &Passwd{byName: map[string]User{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-") {
			continue
		}
		u, err := users.ParsePasswdLine(line)
		if err != nil || u.Name == "" {
			continue
		}
		if _, dup := p.byName[u.Name]; dup {
			continue // the first entry wins, as with getpwnam
		}
		p.byName[u.Name] = u
		p.all = append(p.all, u)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// Lookup finds a login name; names are case-sensitive, as logins are.
func (p *Passwd) Lookup(name string) (User, bool) {
	if p == nil {
		return User{}, false
	}
	u, ok := p.byName[name]
	return u, ok
}

// All is every entry, in file order.
func (p *Passwd) All() []User {
	if p == nil {
		return nil
	}
	return p.all
}
