package maildrop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/safeio"
)

// Options configure a Pickup.
type Options struct {
	QueueDir string // queue_directory
	// Group is setgid_group: the group of maildrop and public, whose
	// members (the setgid sendmail) may submit. A name that is no group
	// leaves submission to root and the server's own user, with a
	// warning.
	Group string
	// MaxMessage is message_size_limit: a file whose message is larger
	// is refused (0: no limit).
	MaxMessage int64
	Origin     string // myorigin: the domain of bare addresses
	// Submit hands a checked submission to cleanup and returns its queue
	// ID once the message is durably queued. An error with a
	// Temporary() method that says false (a refusal such as 554 5.4.6
	// too many hops) sets the file aside; any other error leaves it for
	// the next scan.
	// uid is the submitting user's, checked against the file's owner:
	// cleanup names it in the Received: field it adds.
	Submit func(ctx context.Context, uid int, env *envelope.Envelope, body io.Reader) (queueID string, err error)
	// Log takes pickup's mail log lines ("ID: uid=1000 from=<alice>",
	// "warning: ...").
	Log func(line string)
	// Interval rescans maildrop without a poke, as a safety net (a lost
	// wake-up, a file dropped while the FIFO was being made); 0 means
	// only at start and on pokes.
	Interval time.Duration
}

// Pickup moves submissions from maildrop into the queue.
type Pickup struct {
	o        Options
	dir      string
	fifo     *os.File
	wake     chan struct{}
	cancel   context.CancelFunc
	done     sync.WaitGroup
	scanning sync.Mutex
	// submitted holds files submitted whose removal failed, so that a
	// maildrop gone read-only does not queue them again at every scan.
	submitted map[string]bool
}

// Start prepares maildrop, public/pickup and corrupt under
// queue_directory (creating them, setting group and modes) and starts
// the pickup: a scan now, then on every poke and every Interval. Close
// stops it.
func Start(o Options) (*Pickup, error) {
	p := &Pickup{o: o, dir: filepath.Join(o.QueueDir, DropDir), wake: make(chan struct{}, 1), submitted: map[string]bool{}}
	if p.o.Log == nil {
		p.o.Log = func(string) {}
	}
	if err := p.prepare(); err != nil {
		return nil, err
	}
	// Read and write: the FIFO then always has a writer, so a read
	// waits for data instead of returning end of file when the last
	// sendmail closes it.
	f, err := os.OpenFile(filepath.Join(o.QueueDir, PickupFIFO), os.O_RDWR|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("pickup FIFO: %w", err)
	}
	p.fifo = f
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.done.Add(2)
	go p.listen()
	go p.run(ctx)
	return p, nil
}

// Close stops the pickup after the scan in progress, if any.
func (p *Pickup) Close() {
	p.cancel()
	p.fifo.Close()
	p.done.Wait()
}

// Poke asks for a scan, as a byte in the FIFO does.
func (p *Pickup) Poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Pickup) listen() {
	defer p.done.Done()
	buf := make([]byte, 512)
	for {
		n, err := p.fifo.Read(buf)
		if n > 0 {
			p.Poke()
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return // closed
		}
	}
}

func (p *Pickup) run(ctx context.Context) {
	defer p.done.Done()
	var tick <-chan time.Time
	if p.o.Interval > 0 {
		t := time.NewTicker(p.o.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		p.Scan(ctx)
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-tick:
		}
	}
}

// prepare makes the directories with the group and modes Postfix gives
// them (maildrop 1730, public 0710, FIFO 0622) and queue_directory
// passable for the group's members.
func (p *Pickup) prepare() error {
	q := p.o.QueueDir
	gid := -1
	if p.o.Group != "" {
		if g, err := user.LookupGroup(p.o.Group); err != nil {
			why := err.Error()
			if errors.As(err, new(user.UnknownGroupError)) {
				why = "no such group"
			}
			p.o.Log(fmt.Sprintf("warning: setgid_group %s: %s: only root can submit with mailtee sendmail", p.o.Group, why))
		} else if n, err := strconv.Atoi(g.Gid); err == nil {
			gid = n
		}
	}
	if err := os.MkdirAll(q, 0o755); err != nil {
		return err
	}
	if gid >= 0 {
		// The group's members must pass through queue_directory (Postfix
		// has it 0755); what is below stays private by its own modes.
		if fi, err := os.Stat(q); err == nil && fi.Mode().Perm()&0o011 != 0o011 {
			if err := os.Chmod(q, fi.Mode().Perm()|0o011); err != nil {
				return err
			}
		}
	}
	for _, d := range []struct {
		name string
		mode os.FileMode
	}{{DropDir, 0o730 | os.ModeSticky}, {PublicDir, 0o710}, {CorruptDir, 0o700}} {
		path := filepath.Join(q, d.name)
		if err := os.Mkdir(path, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		fi, err := os.Lstat(path)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", path)
		}
		if gid >= 0 && d.name != CorruptDir {
			if err := os.Lchown(path, -1, gid); err != nil {
				// A server not run as root (the quickstart, a test)
				// cannot give maildrop a group it is not in: then only
				// its own user submits, as with no such group.
				if os.Geteuid() == 0 || !errors.Is(err, fs.ErrPermission) {
					return fmt.Errorf("setgid_group %s: %w", p.o.Group, err)
				}
				p.o.Log(fmt.Sprintf("warning: setgid_group %s: not running as root, the group cannot be given to maildrop: only this user can submit with mailtee sendmail", p.o.Group))
				gid = -1
			}
		}
		if err := os.Chmod(path, d.mode); err != nil {
			return err
		}
	}
	fifo := filepath.Join(q, PickupFIFO)
	if err := os.Remove(fifo); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		return fmt.Errorf("pickup FIFO: %w", err)
	}
	return os.Chmod(fifo, 0o622)
}

// Scan submits every complete file in maildrop and reports how many it
// took. Bad files are set aside or removed, each with a warning; a
// temporary failure of Submit ends the scan, the file waiting for the
// next one.
func (p *Pickup) Scan(ctx context.Context) (int, error) {
	p.scanning.Lock()
	defer p.scanning.Unlock()
	d, err := os.Open(p.dir)
	if err != nil {
		p.o.Log(fmt.Sprintf("warning: %s: %v", p.dir, err))
		return 0, err
	}
	defer d.Close()
	taken := 0
	// In batches: a user who drops a million files costs no more memory
	// than a thousand.
	for ctx.Err() == nil {
		names, err := d.Readdirnames(1000)
		if len(names) == 0 {
			if err != nil && !errors.Is(err, io.EOF) {
				return taken, err
			}
			break
		}
		slices.Sort(names)
		for _, name := range names {
			if ctx.Err() != nil {
				break
			}
			ok, err := p.take(ctx, name)
			if ok {
				taken++
			}
			if err != nil {
				safeio.SyncDir(p.dir)
				return taken, err
			}
		}
	}
	if taken > 0 {
		// The removals: a crash before this repeats a submission, never
		// loses one.
		safeio.SyncDir(p.dir)
	}
	return taken, nil
}

// take handles one maildrop entry. It returns an error only for a
// temporary failure of Submit.
func (p *Pickup) take(ctx context.Context, name string) (bool, error) {
	path := filepath.Join(p.dir, name)
	fi, err := os.Lstat(path)
	if err != nil {
		return false, nil // gone already
	}
	if p.submitted[name] {
		return false, nil
	}
	if strings.HasPrefix(name, tmpPrefix) && fi.Mode().IsRegular() {
		if time.Since(fi.ModTime()) > staleTemp {
			p.remove(name, fi, "an unfinished submission older than "+staleTemp.String())
		}
		return false, nil
	}
	if !fi.Mode().IsRegular() {
		// Never opened: a FIFO would block, a device could act on open.
		// A directory may hold files: moved whole.
		if fi.IsDir() {
			p.setAside(name, fi, "a directory")
		} else {
			p.remove(name, fi, fmt.Sprintf("not a regular file (%v)", fi.Mode().Type()))
		}
		return false, nil
	}
	if !validName(name) {
		p.setAside(name, fi, "not a name sendmail gives")
		return false, nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			p.remove(name, fi, "a symbolic link")
		} else if !errors.Is(err, fs.ErrNotExist) {
			p.o.Log(fmt.Sprintf("warning: %s/%s: %v", DropDir, name, err))
		}
		return false, nil
	}
	defer f.Close()
	// The file as opened, not as listed: it may have been replaced.
	if fi, err = f.Stat(); err != nil {
		return false, nil
	}
	st := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		p.remove(name, fi, fmt.Sprintf("not a regular file (%v)", fi.Mode().Type()))
		return false, nil
	case st.Nlink != 1:
		// A link to someone else's file is not a submission; which name
		// is the link is unknown, so each is kept aside, not removed.
		p.setAside(name, fi, fmt.Sprintf("%d hard links", st.Nlink))
		return false, nil
	}
	limit := int64(-1)
	if p.o.MaxMessage > 0 {
		limit = p.o.MaxMessage + int64(EnvelopeOverhead)
		if fi.Size() > limit {
			p.setAside(name, fi, fmt.Sprintf("%d bytes, larger than message_size_limit (%d) allows", fi.Size(), p.o.MaxMessage))
			return false, nil
		}
	}
	var r io.Reader = f
	if limit >= 0 {
		r = io.LimitReader(f, limit+1) // the file may grow after Stat
	}
	data, err := io.ReadAll(r)
	if err != nil {
		p.o.Log(fmt.Sprintf("warning: %s/%s: %v", DropDir, name, err))
		return false, nil
	}
	drop, msg, err := Decode(data, p.o.MaxMessage)
	if err != nil {
		p.setAside(name, fi, err.Error())
		return false, nil
	}
	// The uid is the owner's: a user cannot pass mail off as another's.
	// Root may submit in any user's name (its own tools do).
	if st.Uid != 0 && st.Uid != drop.UID {
		p.setAside(name, fi, fmt.Sprintf("records uid %d but is owned by uid %d", drop.UID, st.Uid))
		return false, nil
	}
	env, body, err := p.envelope(name, drop, msg)
	if err != nil {
		p.setAside(name, fi, err.Error())
		return false, nil
	}
	id, err := p.o.Submit(ctx, int(drop.UID), env, bytes.NewReader(body))
	if err != nil {
		var t interface{ Temporary() bool }
		if errors.As(err, &t) && !t.Temporary() {
			p.setAside(name, fi, "refused: "+err.Error())
			return false, nil
		}
		p.o.Log(fmt.Sprintf("warning: %s/%s: cannot queue it now, will try again: %v", DropDir, name, err))
		return false, err
	}
	p.o.Log(fmt.Sprintf("%s: uid=%d from=<%s>", id, drop.UID, drop.From))
	// After Submit only: a crash in between submits the file again at
	// the next start (at least once, never lost).
	p.removeSame(name, fi)
	return true, nil
}

// envelope checks and qualifies the addresses of a local submission, as
// Postfix's pickup does; cleanup completes its header.
func (p *Pickup) envelope(name string, d *Drop, msg []byte) (*envelope.Envelope, []byte, error) {
	fa, err := address.Parse(d.From)
	if err != nil {
		return nil, nil, fmt.Errorf("bad sender %q: %v", d.From, err)
	}
	from := fa.String()
	if !fa.IsNull() && fa.Domain == "" {
		from += "@" + p.o.Origin
	}
	env := &envelope.Envelope{From: from, ClientName: "localhost", Protocol: "local", Arrival: d.Arrival}
	for _, r := range d.Rcpts {
		a, err := address.Parse(r)
		if err != nil || a.IsNull() {
			return nil, nil, fmt.Errorf("bad recipient %q: %v", r, err)
		}
		addr := a.String()
		if a.Domain == "" {
			addr += "@" + p.o.Origin
		}
		env.Rcpts = append(env.Rcpts, envelope.Rcpt{Addr: addr, Orig: r})
	}
	// Header and body apart by an empty line, whatever was submitted:
	// cleanup adds the fields a submission lacks at the header's end.
	hdr, rest := SplitHeader(msg)
	return env, append(hdr[:len(hdr):len(hdr)], rest...), nil
}

// setAside moves a refused file to corrupt/ for the administrator (or
// removes it if that fails), with a warning naming it and the reason.
func (p *Pickup) setAside(name string, fi fs.FileInfo, reason string) {
	dst := filepath.Join(p.o.QueueDir, CorruptDir, "maildrop-"+name)
	if _, err := os.Lstat(dst); err == nil {
		dst += "." + strconv.FormatInt(time.Now().UnixNano(), 10)
	}
	if err := os.Rename(filepath.Join(p.dir, name), dst); err != nil {
		p.remove(name, fi, reason)
		return
	}
	p.o.Log(fmt.Sprintf("warning: %s/%s: %s (owner uid %s); moved to %s", DropDir, name, reason, owner(fi), filepath.Join(CorruptDir, filepath.Base(dst))))
}

func (p *Pickup) remove(name string, fi fs.FileInfo, reason string) {
	if err := os.Remove(filepath.Join(p.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		p.o.Log(fmt.Sprintf("warning: %s/%s: %s (owner uid %s); cannot remove it: %v", DropDir, name, reason, owner(fi), err))
		return
	}
	p.o.Log(fmt.Sprintf("warning: %s/%s: %s (owner uid %s); removed", DropDir, name, reason, owner(fi)))
}

// removeSame removes name if it is still the file fi describes: its
// owner may have replaced it meanwhile, and the new file is another
// submission.
func (p *Pickup) removeSame(name string, fi fs.FileInfo) {
	path := filepath.Join(p.dir, name)
	now, err := os.Lstat(path)
	if err != nil || !os.SameFile(fi, now) {
		return
	}
	if err := os.Remove(path); err != nil {
		p.submitted[name] = true
		p.o.Log(fmt.Sprintf("warning: %s/%s: submitted, but cannot remove it (a restart will submit it again): %v", DropDir, name, err))
	}
}

func owner(fi fs.FileInfo) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return strconv.FormatUint(uint64(st.Uid), 10)
	}
	return "?"
}
