// Package command delivers a message to an external command, as Postfix's
// local(8) does for a "|command" destination (aliases, .forward,
// :include:) and for mailbox_command (src/local/command.c, which calls
// src/global/pipe_command.c):
//
//   - The command runs in its own session and process group, with the
//     message on its standard input as mail_copy() writes it for a command
//     (From_ line, Return-Path:, X-Original-To:, Delivered-To:, no >From
//     quoting, no trailing blank line), and a fresh environment (Env).
//   - It runs directly when it has no shell magic characters, else with
//     /bin/sh -c (src/util/exec_command.c); with local_command_shell set,
//     always with that shell (its words, then the command).
//   - Standard output and standard error go to one pipe, of which the
//     first 4096 bytes are kept for the bounce text.
//   - After command_time_limit the whole process group is killed and the
//     recipient bounces ("Command time limit exceeded").
//   - The exit status is mapped as <sysexits.h> says (src/global/sys_exits.c),
//     unless the output begins with an RFC 3463 status code, which wins.
//     A command that exits 0 without reading all of its input has
//     delivered the message (Postfix ignores EPIPE).
//
// Run uses the identity of its caller: as root, mailtee runs it in a
// helper process with the recipient's uid and gid (internal/asuser).
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/mailcopy"
)

// DefaultTimeLimit is command_time_limit's default.
const DefaultTimeLimit = 1000 * time.Second

// DefaultPath is the PATH every command gets: glibc's _PATH_DEFPATH, which
// pipe_command() sets whatever export_environment says.
const DefaultPath = "/usr/bin:/bin"

// maxOutput is how much of a command's output is kept, as pipe_command's
// log_buf (VSTREAM_BUFSIZE).
const maxOutput = 4096

// Spec is one command delivery.
type Spec struct {
	// Command is the command line, as the alias, .forward or
	// mailbox_command gives it.
	Command string
	// Shell is local_command_shell: when set, the command always runs as
	// Shell's words followed by Command as one argument; when empty, as
	// Postfix's exec_command() does (directly, or /bin/sh -c).
	Shell string
	// Env is the whole environment of the command (see Env).
	Env []string
	// Dir is the working directory (command_execution_directory,
	// expanded); the command is deferred when it cannot go there. Empty
	// means "/": Postfix's local(8) leaves its commands in the queue
	// directory, which the recipient cannot read either.
	Dir string
	// TimeLimit is command_time_limit; DefaultTimeLimit when zero.
	TimeLimit time.Duration
	// Envelope is what the lines added before the message say.
	Envelope mailcopy.Envelope
	// Flags choose those lines; mailcopy.Command when zero.
	Flags mailcopy.Flags
}

// allowRoot lets the tests, which run as root, run commands as root.
// mailtee itself never does: Postfix's local(8) panics on a command with
// uid 0 (command.c, "privileged default user id").
var allowRoot = false

// Run delivers msg to s.Command and returns nil or a *deliver.Error in
// local(8)'s words: deferred when the command says so (EX_TEMPFAIL,
// a 4.X.X status, a signal) or could not start, bounced otherwise.
// When ctx ends, the command is killed and the delivery deferred.
func Run(ctx context.Context, s Spec, msg *deliver.Message) error {
	if s.TimeLimit <= 0 {
		s.TimeLimit = DefaultTimeLimit
	}
	if s.Flags == 0 {
		s.Flags = mailcopy.Command
	}
	dir := s.Dir
	if dir == "" {
		dir = "/"
	}
	if os.Geteuid() == 0 && !allowRoot {
		return tempf("4.3.0", "refusing to run command as root: \"%s\"", s.Command)
	}
	if strings.TrimSpace(s.Command) == "" {
		return permf("5.3.5", "mail system configuration error: empty command")
	}
	argv := argvOf(s.Command, s.Shell)
	body, err := msg.Open()
	if err != nil {
		return tempf("4.3.0", "cannot read message %s: %v", msg.ID, err)
	}
	defer body.Close()

	inR, inW, err := os.Pipe()
	if err != nil {
		return tempf("4.3.0", "system resource problem: %s", deliver.Strerror(err))
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return tempf("4.3.0", "system resource problem: %s", deliver.Strerror(err))
	}
	env := s.Env
	if env == nil {
		env = []string{} // nil would give it mailtee's own environment
	}
	cmd := &exec.Cmd{
		Path:   argv[0],
		Args:   argv,
		Env:    env,
		Dir:    dir,
		Stdin:  inR,
		Stdout: outW,
		Stderr: outW,
		// A session of its own, as pipe_command's setsid(): the time
		// limit kills the command's children too, and no terminal
		// signal of mailtee's reaches it.
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return startError(err, argv[0], dir)
	}
	pid := cmd.Process.Pid

	copied := make(chan error, 1)
	go func() {
		_, err := mailcopy.Copy(inW, body, s.Envelope, s.Flags)
		var re *mailcopy.ErrRead
		if errors.As(err, &re) {
			// Kill before the command sees the end of its input: at a
			// clean EOF it would deliver the part it got.
			kill(pid, nil, nil)
		}
		inW.Close()
		copied <- err
	}()
	output := make(chan []byte, 1)
	go func() { output <- readBounded(outR) }()
	// The command is reaped only once nothing more may be killed: until
	// then its pid, and so its process group's, cannot be reused, and a
	// kill cannot reach another process (pipe_command kills before its
	// waitpid too).
	exited := make(chan error, 1)
	go func() {
		var si unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, pid, &si, unix.WEXITED|unix.WNOWAIT, nil)
			if err != unix.EINTR {
				exited <- err
				return
			}
		}
	}()

	// Like Postfix, wait for the copy, the end of the output and the
	// exit: a command that leaves a process holding its output open runs
	// into the time limit.
	timer := time.NewTimer(s.TimeLimit)
	defer timer.Stop()
	done := ctx.Done()
	var (
		copyErr, waitErr      error
		out                   []byte
		nCopy, nOut, nWait    int
		timedOut, interrupted bool
	)
	for nCopy+nOut+nWait < 3 {
		select {
		case copyErr = <-copied:
			nCopy++
		case out = <-output:
			nOut++
		case waitErr = <-exited:
			nWait++
		case <-timer.C:
			timedOut = true
			kill(pid, inW, outR)
		case <-done:
			interrupted, done = true, nil
			kill(pid, inW, outR)
		}
	}
	outR.Close()
	text := outputText(out)
	if waitErr == nil {
		waitErr = cmd.Wait()
	}
	var ee *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &ee) {
		return tempf("4.3.0", "system resource problem: wait: %v", waitErr)
	}
	switch {
	case timedOut:
		return permf("5.3.0", "Command time limit exceeded: \"%s\"%s", s.Command, withOutput(text))
	case interrupted:
		return tempf("4.3.0", "Command interrupted: \"%s\": %v%s", s.Command, ctx.Err(), withOutput(text))
	}
	var re *mailcopy.ErrRead
	if errors.As(copyErr, &re) {
		// Postfix bounces here; mailtee's queue read errors are
		// temporary everywhere else, so they are here too.
		return tempf("4.3.0", "Command failed: error reading message: %s: \"%s\"", deliver.Strerror(re.Err), s.Command)
	}
	if err := exitError(cmd.ProcessState, s.Command, text); err != nil {
		return err
	}
	switch {
	case copyErr == nil, errors.Is(copyErr, syscall.EPIPE):
		return nil
	default:
		return permf(mboxDSN(copyErr, "5.3.0"), "Command failed: error writing message: %s: \"%s\"", deliver.Strerror(copyErr), s.Command)
	}
}

// kill ends the command and everything it started in its process group,
// and the copies to and from it, as pipe_command's kill_command(): the
// caller has the command's uid, so kill(2) may reach it.
func kill(pid int, in, out *os.File) {
	if syscall.Kill(-pid, syscall.SIGKILL) != nil {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if in != nil {
		in.Close()  // a write blocked on a pipe a grandchild left unread
		out.Close() // a read blocked on a pipe a detached process holds
	}
}

// readBounded reads r to its end and returns its first maxOutput bytes.
// The rest is read and dropped, so that a talkative command does not
// block on a full pipe (Postfix makes the pipe non-blocking instead, and
// the command's writes fail).
func readBounded(r *os.File) []byte {
	buf := make([]byte, 0, maxOutput)
	var tmp [8192]byte
	for {
		n, err := r.Read(tmp[:])
		if room := maxOutput - len(buf); room > 0 {
			buf = append(buf, tmp[:min(n, room)]...)
		}
		if err != nil {
			return buf
		}
	}
}

// argvOf is the program and arguments that run command.
func argvOf(command, shell string) []string {
	if shell != "" {
		// argv_split(shell, CHARS_SPACE), then the command as one word,
		// run by execvp().
		argv := append(strings.FieldsFunc(shell, isSpace), command)
		if p, ok := lookPath(argv[0]); ok {
			argv[0] = p
		}
		return argv
	}
	// exec_command(): without shell magic characters, and not only
	// blanks, split on blanks and run directly, unless the program is not
	// found and may be a shell built-in.
	if strings.Trim(command, execOK) == "" && strings.Trim(command, " \t") != "" {
		argv := strings.FieldsFunc(command, func(r rune) bool { return r == ' ' || r == '\t' })
		if p, ok := lookPath(argv[0]); ok {
			argv[0] = p
			return argv
		}
	}
	return []string{"/bin/sh", "-c", command}
}

// execOK are the characters exec_command() lets through without a shell.
const execOK = "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ \t"

// lookPath finds name as execvp() does with DefaultPath, the PATH the
// command gets. Only "not found" sends a command to the shell: a name
// with a slash, or one found but not executable, fails to start.
func lookPath(name string) (string, bool) {
	if strings.Contains(name, "/") {
		return name, true
	}
	for _, d := range strings.Split(DefaultPath, ":") {
		p := d + "/" + name
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
	}
	return "", false
}

// isSpace is CHARS_SPACE.
func isSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\r' || r == '\n' }

// startError is what a command that could not start gets. In Postfix the
// child process reports it and exits with EX_TEMPFAIL, so the delivery is
// deferred with the child's message as the command output.
func startError(err error, prog, dir string) error {
	if e := unix.Access(dir, unix.X_OK); e != nil {
		return tempf("4.3.0", "temporary failure. Command output: fatal: cannot change directory to \"%s\" for uid=%d gid=%d: %s", dir, os.Geteuid(), os.Getegid(), deliver.Strerror(e))
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return tempf("4.3.0", "temporary failure. Command output: fatal: execvp %s: %s", prog, deliver.Strerror(err))
}

// exitError maps a command's end as pipe_command() does; nil for exit 0.
func exitError(ps *os.ProcessState, command, output string) error {
	ws, _ := ps.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		return tempf("4.3.0", "Command died with signal %d: \"%s\"%s", int(ws.Signal()), command, withOutput(output))
	}
	code := ws.ExitStatus()
	if code == 0 {
		return nil
	}
	if status, rest, ok := SplitStatus(output); ok {
		return outcome(status, rest)
	}
	if d, ok := sysExits[code]; ok {
		return outcome(d.dsn, d.text+withOutput(output))
	}
	return permf("5.3.0", "Command died with status %d: \"%s\"%s", code, command, withOutput(output))
}

func withOutput(output string) string {
	if output == "" {
		return ""
	}
	return ". Command output: " + output
}

// outcome is a failure with status: deferred for 4.X.X, bounced for
// anything else (a 2.X.X code with a non-zero exit bounces in Postfix too).
func outcome(status, text string) *deliver.Error {
	return &deliver.Error{Permanent: status[0] != '4', Enhanced: status, Text: text, Relay: "local"}
}

type exitDetail struct{ dsn, text string }

// sysExits is src/global/sys_exits.c's table.
var sysExits = map[int]exitDetail{
	64: {"5.3.0", "command line usage error"},      // EX_USAGE
	65: {"5.6.0", "data format error"},             // EX_DATAERR
	66: {"5.3.0", "cannot open input"},             // EX_NOINPUT
	67: {"5.1.1", "user unknown"},                  // EX_NOUSER
	68: {"5.1.2", "host name unknown"},             // EX_NOHOST
	69: {"5.3.0", "service unavailable"},           // EX_UNAVAILABLE
	70: {"5.3.0", "internal software error"},       // EX_SOFTWARE
	71: {"4.3.0", "system resource problem"},       // EX_OSERR
	72: {"5.3.0", "critical OS file missing"},      // EX_OSFILE
	73: {"5.2.0", "can't create user output file"}, // EX_CANTCREAT
	74: {"5.3.0", "input/output error"},            // EX_IOERR
	75: {"4.3.0", "temporary failure"},             // EX_TEMPFAIL
	76: {"5.5.0", "remote error in protocol"},      // EX_PROTOCOL
	77: {"5.7.0", "permission denied"},             // EX_NOPERM
	78: {"5.3.5", "local configuration error"},     // EX_CONFIG
}

// SplitStatus reads an RFC 3463 status code at the very start of a
// command's output, as pipe_command's dsn_valid() then dsn_split(): one
// of 2, 4, 5, a dot, 1-3 digits, a dot, 1-3 digits, then the end or white
// space. rest is the text after it, leading white space removed.
func SplitStatus(output string) (status, rest string, ok bool) {
	if len(output) < 5 || (output[0] != '2' && output[0] != '4' && output[0] != '5') || output[1] != '.' {
		return "", "", false
	}
	i := 2
	n := digits(output[i:])
	if n < 1 || n > 3 || i+n >= len(output) || output[i+n] != '.' {
		return "", "", false
	}
	i += n + 1
	n = digits(output[i:])
	if n < 1 || n > 3 || i+n < len(output) && !isCSpace(output[i+n]) {
		return "", "", false
	}
	i += n
	return output[:i], strings.TrimLeft(output[i:], " \t\n\v\f\r"), true
}

func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// isCSpace is C's isspace() in the C locale.
func isCSpace(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' }

// outputText is a command's output as it goes into a bounce: up to a NUL
// (Postfix handles it as a C string), tabs and newlines as spaces, other
// bytes that are neither printable ASCII nor valid UTF-8 as '_'
// (translit() and printable() in pipe_command).
func outputText(out []byte) string {
	if i := bytes.IndexByte(out, 0); i >= 0 {
		out = out[:i]
	}
	b := make([]byte, 0, len(out))
	for i := 0; i < len(out); {
		c := out[i]
		switch {
		case c == '\t' || c == '\n':
			b = append(b, ' ')
		case c >= ' ' && c < 0x7f:
			b = append(b, c)
		case c >= 0x80:
			if r, n := utf8.DecodeRune(out[i:]); r != utf8.RuneError || n > 1 {
				b = append(b, out[i:i+n]...)
				i += n
				continue
			}
			b = append(b, '_')
		default:
			b = append(b, '_')
		}
		i++
	}
	return string(b)
}

// mboxDSN is src/global/mbox_open.c's mbox_dsn(): the status of a failed
// write.
func mboxDSN(err error, def string) string {
	switch {
	case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.ESTALE):
		return "4.2.0"
	case errors.Is(err, syscall.ENOSPC):
		return "4.3.0"
	case errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		return "5.2.2"
	}
	return def
}

func tempf(status, format string, args ...any) *deliver.Error {
	return &deliver.Error{Enhanced: status, Text: fmt.Sprintf(format, args...), Relay: "local"}
}

func permf(status, format string, args ...any) *deliver.Error {
	return &deliver.Error{Permanent: true, Enhanced: status, Text: fmt.Sprintf(format, args...), Relay: "local"}
}
