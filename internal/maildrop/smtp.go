package maildrop

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/mailtee/mailtee/internal/address"
)

// smtpLineMax bounds a command line (Postfix's line_length_limit is
// 2048; RFC 5321 asks for 512): a longer one is refused, not buffered.
const smtpLineMax = 4096

// SMTPSession is what ServeSMTP needs of the configuration.
type SMTPSession struct {
	Hostname  string // myhostname, in HELO/EHLO replies
	Banner    string // the greeting's text after "220 "
	SizeLimit int64  // message_size_limit; 0: none
	MaxRcpt   int    // smtpd_recipient_limit; 0: none
	// Drop queues one message, as sendmail drops one into maildrop.
	Drop func(from string, rcpts []string, body []byte) error
	// Warn, when set, is told why a Drop failed.
	Warn func(error)
}

// ServeSMTP is sendmail -bs: an SMTP session on in and out, as Postfix's
// sendmail runs "smtpd -S" for it. Each message is handed to o.Drop, so
// it needs no running server. Replies are Postfix's. Lines may end in
// LF or CRLF; replies end in CRLF. It returns at QUIT, at the end of
// input, or when out fails.
func ServeSMTP(in io.Reader, out io.Writer, o SMTPSession) {
	r := bufio.NewReaderSize(in, smtpLineMax)
	w := bufio.NewWriter(out)
	reply := func(lines ...string) bool {
		for _, l := range lines {
			w.WriteString(l)
			w.WriteString("\r\n")
		}
		return w.Flush() == nil
	}
	host, limit, maxRcpt := o.Hostname, o.SizeLimit, o.MaxRcpt
	if !reply("220 " + o.Banner) {
		return
	}
	var (
		from     string
		haveMail bool
		rcpts    []string
	)
	reset := func() { from, haveMail, rcpts = "", false, nil }
	for {
		line, err := readSMTPLine(r)
		if errors.Is(err, errLineTooLong) {
			if !reply("500 5.5.2 Error: line too long") {
				return
			}
			continue
		}
		if err != nil {
			return // end of input: the session is over, as smtpd's
		}
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		arg = strings.TrimSpace(arg)
		var ok bool
		switch verb {
		case "HELO":
			if arg == "" {
				ok = reply("501 Syntax: HELO hostname")
				break
			}
			reset()
			ok = reply("250 " + host)
		case "EHLO":
			if arg == "" {
				ok = reply("501 Syntax: EHLO hostname")
				break
			}
			reset()
			ext := []string{"250-" + host, "250-PIPELINING"}
			if limit > 0 {
				ext = append(ext, fmt.Sprintf("250-SIZE %d", limit))
			}
			ok = reply(append(ext, "250-ENHANCEDSTATUSCODES", "250-8BITMIME", "250 DSN")...)
		case "MAIL":
			p, rest, perr := smtpPath(arg, "FROM:")
			switch {
			case haveMail:
				ok = reply("503 5.5.1 Error: nested MAIL command")
			case perr != nil:
				ok = reply("501 5.1.7 Bad sender address syntax")
			case limit > 0 && sizeParam(rest) > limit:
				ok = reply("552 5.3.4 Message size exceeds fixed limit")
			default:
				a, err := address.Parse(p)
				if err != nil {
					ok = reply("501 5.1.7 Bad sender address syntax")
					break
				}
				from, haveMail = a.String(), true
				ok = reply("250 2.1.0 Ok")
			}
		case "RCPT":
			p, _, perr := smtpPath(arg, "TO:")
			switch {
			case !haveMail:
				ok = reply("503 5.5.1 Error: need MAIL command")
			case perr != nil:
				ok = reply("501 5.1.3 Bad recipient address syntax")
			case maxRcpt > 0 && len(rcpts) >= maxRcpt:
				ok = reply("452 4.5.3 Error: too many recipients")
			default:
				a, err := address.Parse(p)
				if err != nil || a.IsNull() {
					ok = reply("501 5.1.3 Bad recipient address syntax")
					break
				}
				rcpts = append(rcpts, a.String())
				ok = reply("250 2.1.5 Ok")
			}
		case "DATA":
			switch {
			case arg != "":
				ok = reply("501 5.5.4 Syntax: DATA")
				continue
			case !haveMail:
				ok = reply("503 5.5.1 Error: need MAIL command")
				if !ok {
					return
				}
				continue
			case len(rcpts) == 0:
				ok = reply("503 5.5.1 Error: need RCPT command")
				if !ok {
					return
				}
				continue
			}
			if !reply("354 End data with <CR><LF>.<CR><LF>") {
				return
			}
			body, err := readSMTPData(r, limit)
			switch {
			case errors.Is(err, ErrTooBig):
				ok = reply("552 5.3.4 Error: message file too big")
			case err != nil:
				return // input ended within DATA: nothing queued
			default:
				if err := o.Drop(from, rcpts, body); err != nil {
					if o.Warn != nil {
						o.Warn(err)
					}
					if errors.Is(err, fs.ErrPermission) || errors.Is(err, ErrNoMaildrop) {
						ok = reply("451 4.3.0 Error: queue file write error (maildrop not writable: is mailtee installed setgid, and has mailtee serve started once?)")
					} else {
						ok = reply("451 4.3.0 Error: queue file write error")
					}
				} else {
					ok = reply("250 2.0.0 Ok: queued")
				}
			}
			reset()
		case "RSET":
			reset()
			ok = reply("250 2.0.0 Ok")
		case "NOOP":
			ok = reply("250 2.0.0 Ok")
		case "VRFY":
			// As Postfix with disable_vrfy_command = yes: mailtee
			// never discloses its users.
			ok = reply("502 5.5.1 VRFY command is disabled")
		case "QUIT":
			reply("221 2.0.0 Bye")
			return
		default:
			ok = reply("502 5.5.2 Error: command not recognized")
		}
		if !ok {
			return
		}
	}
}

var errLineTooLong = errors.New("line too long")

// readSMTPLine reads one command line without its line end; a line
// over smtpLineMax is read to its end and refused.
func readSMTPLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = r.ReadSlice('\n')
		}
		if err == nil {
			return "", errLineTooLong
		}
		return "", err
	}
	if err != nil && len(line) == 0 {
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// readSMTPData reads a message up to the line ".", undoing dot
// stuffing, with CRLF line ends; over limit (when positive) it reads on
// to the end and returns ErrTooBig.
func readSMTPData(r *bufio.Reader, limit int64) ([]byte, error) {
	var body bytes.Buffer
	tooBig := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, io.ErrUnexpectedEOF
		}
		text := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if text == "." {
			break
		}
		text = strings.TrimPrefix(text, ".")
		if !tooBig {
			body.WriteString(text)
			body.WriteString("\r\n")
			if limit > 0 && int64(body.Len()) > limit {
				tooBig = true
				body.Reset()
			}
		}
	}
	if tooBig {
		return nil, ErrTooBig
	}
	return body.Bytes(), nil
}

// smtpPath takes the path of "FROM:<addr> params" (or TO:), with
// blanks after the colon as Postfix tolerates; rest is the parameters.
func smtpPath(arg, prefix string) (path, rest string, err error) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", "", errors.New("syntax")
	}
	s := strings.TrimLeft(arg[len(prefix):], " \t")
	if !strings.HasPrefix(s, "<") {
		// Postfix accepts a bare address (smtpd_strict_rfc821_envelope = no).
		p, rest, _ := strings.Cut(s, " ")
		if p == "" {
			return "", "", errors.New("syntax")
		}
		return p, rest, nil
	}
	end := strings.IndexByte(s, '>')
	if end < 0 {
		return "", "", errors.New("syntax")
	}
	return s[1:end], strings.TrimSpace(s[end+1:]), nil
}

// sizeParam is MAIL's SIZE=n parameter, 0 when absent.
func sizeParam(params string) int64 {
	for _, p := range strings.Fields(params) {
		if k, v, ok := strings.Cut(p, "="); ok && strings.EqualFold(k, "SIZE") {
			var n int64
			if _, err := fmt.Sscan(v, &n); err == nil {
				return n
			}
		}
	}
	return 0
}
