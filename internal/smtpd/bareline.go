package smtpd

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Bare LF in commands, for smtpd_forbid_bare_newline = reject. Postfix
// answers a command line that ends in a bare LF with "550 5.5.2 HOST
// Error: bare <LF> received" and ends the session (smtpd.c, smtpd_proto;
// seen on Postfix 3.7.11). go-smtp reads such a line as any other, so
// the plaintext stream is watched on its way to go-smtp (cmdWatcher):
// a command line that ends in a bare LF marks the connection, and the
// next reply becomes that 550, after which the connection closes.
//
// The watcher follows the stream as go-smtp reads it: after a "DATA"
// line, content runs to go-smtp's end of data (CR LF . CR LF, the same
// state machine as go-smtp's data.go); after "BDAT n", n bytes are
// content. Content is bodyReader's to judge. Whether go-smtp takes a DATA
// is known from its reply: conn gives go-smtp a DATA line in a read of
// its own (readPlain), so the next reply answers it, and a refusal puts
// the watcher back to commands (dataVerdict). The watcher sees TLS
// sessions' plaintext too (starttls.go).

// cmdWatcher finds command lines that end in a bare LF.
type cmdWatcher struct {
	prev  byte   // the byte before
	line  []byte // the start of the command line so far (verb, BDAT size)
	mode  int    // watchCommand, watchData or watchChunk
	data  int    // go-smtp's data.go state, in watchData
	chunk int64  // bytes of the BDAT chunk left, in watchChunk
	// bareLF: a command line ended in a bare LF since the last take.
	bareLF bool
	// bdat: the last content command was BDAT, not DATA (bodyReader
	// applies the "." line rules to DATA only, as Postfix).
	bdat bool
	// hello is the verb of the last HELO or EHLO line, for the reply
	// to one without a name (replies.go).
	hello string
	// dataPending: a DATA line was fed; go-smtp's reply to it is yet to
	// come (dataVerdict).
	dataPending bool
}

const (
	watchCommand = iota
	watchData
	watchChunk
)

// go-smtp's data reader states (data.go).
const (
	dataBeginLine = iota
	dataDot
	dataDotCR
	dataCR
	dataText
)

// maxWatchedLine is as much of a command line as the watcher keeps:
// enough for "BDAT", a size and "LAST" with any sane white space between
// them. DATA and BDAT lines are kept whole however long
// (longContentLine).
const maxWatchedLine = 1024

// feed takes bytes as go-smtp will read them.
func (w *cmdWatcher) feed(p []byte) {
	for _, c := range p {
		w.step(c)
		w.prev = c
	}
}

func (w *cmdWatcher) step(c byte) {
	switch w.mode {
	case watchChunk:
		w.chunk--
		if w.chunk <= 0 {
			w.mode = watchCommand
		}
		return
	case watchData:
		switch w.data {
		case dataBeginLine:
			switch c {
			case '.':
				w.data = dataDot
			case '\r':
				w.data = dataCR
			default:
				w.data = dataText
			}
		case dataDot:
			w.data = dataText
			if c == '\r' {
				w.data = dataDotCR
			}
		case dataDotCR:
			w.data = dataText
			if c == '\n' {
				w.mode = watchCommand
			}
		case dataCR:
			w.data = dataText
			if c == '\n' {
				w.data = dataBeginLine
			}
		case dataText:
			if c == '\r' {
				w.data = dataCR
			}
		}
		return
	}
	if c != '\n' {
		if len(w.line) < maxWatchedLine || w.longContentLine() {
			w.line = append(w.line, c)
		}
		return
	}
	if w.prev != '\r' {
		w.bareLF = true
	}
	line := strings.ToUpper(strings.TrimRight(string(w.line), "\r"))
	w.line = w.line[:0]
	if cap(w.line) > maxWatchedLine {
		w.line = nil // a padded DATA or BDAT line's buffer is not kept
	}
	switch {
	case line == "HELO" || line == "EHLO" || strings.HasPrefix(line, "HELO ") || strings.HasPrefix(line, "EHLO "):
		w.hello = line[:4]
	case isDataLine(line):
		w.mode, w.data, w.bdat = watchData, dataBeginLine, false
		w.dataPending = true
	case strings.HasPrefix(line, "BDAT "):
		w.bdat = true
		if n := bdatSize(line[5:]); n > 0 {
			w.mode, w.chunk = watchChunk, n
		}
	}
}

// longContentLine reports whether the line being read, already
// maxWatchedLine long, begins with "BDAT " or "DATA ": go-smtp parses a
// line of any length up to maxLineLength (white space, U+00A0 among it,
// around a BDAT size or after DATA), then reads what follows as content.
// Cut short, the line would read differently to the watcher (a cut
// U+00A0 is no white space), which would then take that content for
// commands, a STARTTLS line in it among them, and start TLS in the
// middle of a message.
func (w *cmdWatcher) longContentLine() bool {
	if len(w.line) >= maxLineLength || len(w.line) < 5 {
		return false
	}
	v := string(w.line[:5])
	return strings.EqualFold(v, "BDAT ") || strings.EqualFold(v, "DATA ")
}

// take reports whether a command line ended in a bare LF since the last
// take.
func (w *cmdWatcher) take() bool {
	b := w.bareLF
	w.bareLF = false
	return b
}

// rejectBareLF reports whether smtpd_forbid_bare_newline = reject applies
// to this client: not one in smtpd_forbid_bare_newline_exclusions. A
// lookup error applies it, as Postfix's list match does.
func (c *conn) rejectBareLF() bool {
	if c.srv.o.BareNewline != BareNewlineReject {
		return false
	}
	ex := c.srv.policy.Load().BareNewlineExclusions
	if ex == nil || !c.addr.IsValid() {
		return true
	}
	ok, err := ex.Match(c.srv.ctx, c.addr)
	return err != nil || !ok
}

// noteBareLF takes the watcher's record after a read: with reject in
// force, the next reply refuses the command. Called on go-smtp's
// goroutine for the connection, as readPlain.
func (c *conn) noteBareLF() {
	c.mu.Lock()
	// For Data, which runs on a goroutine of its own for BDAT.
	c.bdat = c.cmds.bdat
	c.hello = c.cmds.hello
	c.mu.Unlock()
	if !c.cmds.take() || !c.rejectBareLF() {
		return
	}
	c.mu.Lock()
	c.bareLFCommand = true
	c.mu.Unlock()
}

// isBDAT reports whether the content being read came by BDAT.
func (c *conn) isBDAT() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bdat
}

// refuseBareLF replaces the reply go-smtp was writing by Postfix's
// refusal of a command with a bare LF, and closes the connection.
func (c *conn) refuseBareLF() error {
	c.srv.log("NOQUEUE: reject: command from %s: bare <LF> received; proto=%s", c.namaddr(), c.baseProtocol())
	return c.replaceAndClose(fmt.Sprintf("%d 5.5.2 %%s Error: bare <LF> received", c.srv.o.BareNewlineCode))
}

// isDataLine reports whether go-smtp v0.25.1 takes line (upper case,
// without its line end) for DATA without an argument (parse.go parseCmd:
// "DATA", or "DATA" with a space and only white space after it), so that
// the watcher reads content where go-smtp does. go-smtp may still refuse
// it (no recipients); what follows is then taken for content up to a CR
// LF . CR LF.
func isDataLine(line string) bool {
	return line == "DATA" || len(line) >= 6 && strings.HasPrefix(line, "DATA ") && strings.TrimSpace(line[5:]) == ""
}

// bdatSize is the size of the chunk that follows a BDAT command with
// arguments arg, as go-smtp v0.25.1 parses them (conn.go handleBdat: a
// size, optionally LAST, nothing more); 0 when go-smtp reads no chunk.
// A BDAT that go-smtp refuses for the state (no recipients, too large)
// has its chunk read and discarded all the same.
func bdatSize(arg string) int64 {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 || len(f) == 2 && !strings.EqualFold(f[1], "LAST") {
		return 0
	}
	n, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil {
		return 0
	}
	return int64(n)
}

// dataVerdict takes go-smtp's reply b to a DATA line: anything but 354
// means go-smtp reads commands again.
func (w *cmdWatcher) dataVerdict(b []byte) {
	if !w.dataPending {
		return
	}
	w.dataPending = false
	if !strings.HasPrefix(string(b[:min(len(b), 4)]), "354") {
		w.mode, w.line = watchCommand, w.line[:0]
	}
}

// scanData looks at p, the start of a command line, for a DATA line as
// go-smtp reads it (isDataLine). It returns the line's length (up to its
// LF) when it is one, 0 when p holds too little to tell, or -1.
func scanData(p []byte) int {
	const verb = "DATA"
	n := min(len(p), len(verb))
	if !strings.EqualFold(string(p[:n]), verb[:n]) {
		return -1
	}
	// The whole line, as go-smtp reads it (longContentLine).
	i := bytes.IndexByte(p[:min(len(p), maxLineLength)], '\n')
	switch {
	case i >= 0 && isDataLine(strings.ToUpper(strings.TrimRight(string(p[:i]), "\r"))):
		return i + 1
	case i >= 0 || len(p) >= maxLineLength:
		return -1
	}
	return 0
}
