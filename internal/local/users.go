package local

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Passwd is the passwd database as local(8) reads it for mailbox owners:
// name, uid, gid and home directory of each login.
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
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 7 || fields[0] == "" || strings.HasPrefix(fields[0], "#") || strings.HasPrefix(fields[0], "+") || strings.HasPrefix(fields[0], "-") {
			continue
		}
		uid, err1 := strconv.ParseUint(fields[2], 10, 32)
		gid, err2 := strconv.ParseUint(fields[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		if _, dup := p.byName[fields[0]]; dup {
			continue // the first entry wins, as with getpwnam
		}
		u := User{Name: fields[0], UID: uint32(uid), GID: uint32(gid), Home: fields[5]}
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
