// Package mailcopy writes a queued message out for local delivery as
// Postfix's mail_copy() (src/global/mail_copy.c) does: optional envelope
// lines first (the mbox "From " line, Return-Path:, X-Original-To:,
// Delivered-To:), then the content with CRLF turned into LF, body lines
// that begin with "From " quoted as ">From " for mbox, a final line end,
// and, for mbox, a blank line so that the next "From " line is found.
// Every local destination uses it: an mbox, a file, a command's input
// and a Maildir file differ only in their Flags.
package mailcopy

import (
	"bufio"
	"bytes"
	"io"
	"sync"
	"time"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/deliver"
)

// Flags choose what Copy adds, as MAIL_COPY_* in Postfix.
type Flags int

const (
	FromLine    Flags = 1 << iota // "From sender  Www Mmm dd hh:mm:ss yyyy"
	ReturnPath                    // "Return-Path: <sender>"
	OrigRcpt                      // "X-Original-To: orig" when Envelope.OrigRcpt is set
	DeliveredTo                   // "Delivered-To: address"
	Quote                         // ">From " for body lines that start with "From "
	Blank                         // an empty line after the message

	// Mbox is what mailbox and file delivery write (MAIL_COPY_MBOX).
	Mbox = FromLine | ReturnPath | OrigRcpt | DeliveredTo | Quote | Blank
	// Command is what a |command gets (local/command.c).
	Command = FromLine | ReturnPath | OrigRcpt | DeliveredTo
	// Maildir is what a Maildir file gets (local/maildir.c).
	Maildir = ReturnPath | OrigRcpt | DeliveredTo
)

// Envelope is what the added lines say.
type Envelope struct {
	Sender      string    // envelope sender; "" for <>
	OrigRcpt    string    // original recipient, "" when unknown
	DeliveredTo string    // the address being delivered to
	Time        time.Time // for the From line; now when zero
}

// ErrRead wraps a failure to read the message (the queue file), which
// the caller must tell from a failure to write its destination.
type ErrRead struct{ Err error }

func (e *ErrRead) Error() string { return "error reading message: " + e.Err.Error() }
func (e *ErrRead) Unwrap() error { return e.Err }

// Copy writes body to w as f says, and returns the bytes written. An
// error reading body is an *ErrRead; any other error is w's. w is
// flushed before Copy returns.
func Copy(w io.Writer, body io.Reader, env Envelope, f Flags) (int64, error) {
	cw := &countWriter{w: w}
	b := bufPool.Get().(*buffers)
	defer bufPool.Put(b)
	bw := b.w
	bw.Reset(cw)
	defer bw.Reset(nil)
	if f&FromLine != 0 {
		sender := "MAILER-DAEMON"
		if env.Sender != "" {
			sender = quote(env.Sender)
		}
		t := env.Time
		if t.IsZero() {
			t = time.Now()
		}
		// Two spaces, and asctime()'s 24 characters, as Postfix writes it.
		bw.WriteString("From " + sender + "  " + t.Local().Format("Mon Jan _2 15:04:05 2006") + "\n")
	}
	if f&ReturnPath != 0 {
		s := ""
		if env.Sender != "" {
			s = quote(env.Sender)
		}
		bw.WriteString("Return-Path: <" + s + ">\n")
	}
	if f&OrigRcpt != 0 && env.OrigRcpt != "" {
		bw.WriteString("X-Original-To: " + quote(env.OrigRcpt) + "\n")
	}
	if f&DeliveredTo != 0 {
		bw.WriteString("Delivered-To: " + quote(env.DeliveredTo) + "\n")
	}
	src := &deliver.ContentReader{R: body}
	br := b.r
	br.Reset(src)
	defer br.Reset(nil)
	atStart := true // the next byte begins a line
	heldCR := false // a CR ended the last chunk: it may begin a CRLF
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			full := chunk[len(chunk)-1] == '\n'
			if full {
				chunk = chunk[:len(chunk)-1]
			}
			if heldCR && !(full && len(chunk) == 0) {
				bw.WriteByte('\r') // a lone CR is content
			}
			heldCR = false
			if n := len(chunk); n > 0 && chunk[n-1] == '\r' {
				chunk = chunk[:n-1]
				heldCR = !full
			}
			if atStart && f&Quote != 0 && bytes.HasPrefix(chunk, []byte("From ")) {
				bw.WriteByte('>')
			}
			bw.Write(chunk)
			if full {
				bw.WriteByte('\n')
			}
			atStart = full && !heldCR
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if src.Err != nil {
				return cw.n, &ErrRead{Err: src.Err}
			}
			return cw.n, err
		}
	}
	if heldCR {
		bw.WriteByte('\r')
	}
	if !atStart || heldCR {
		bw.WriteByte('\n') // the message ends with a line end
	}
	if f&Blank != 0 {
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

// buffers are Copy's, reused: allocating them for each message costs
// more than copying a small one.
type buffers struct {
	w *bufio.Writer
	r *bufio.Reader
}

var bufPool = sync.Pool{New: func() any {
	return &buffers{w: bufio.NewWriterSize(nil, 64<<10), r: bufio.NewReaderSize(nil, 32<<10)}
}}

// quote quotes an address's local part where RFC 5322 needs it, as
// quote_822_local does.
func quote(addr string) string {
	at := -1
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '@' {
			at = i
			break
		}
	}
	if at < 0 {
		return address.QuoteLocal(addr)
	}
	return address.QuoteLocal(addr[:at]) + addr[at:]
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
