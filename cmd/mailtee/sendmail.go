package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"github.com/mailtee/mailtee/internal/cleanup"
	"github.com/mailtee/mailtee/internal/master"
	"io"
	"net/mail"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/address"
	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/envelope"
)

// runSendmail is Postfix's sendmail(1) for cron jobs and scripts: the
// message on standard input is queued for the recipients on the command
// line (or, with -t, in its To/Cc/Bcc headers). Options Postfix accepts
// for compatibility (-i, -oi, -odi, -F name, ...) are accepted too.
func runSendmail(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	dir := defaultConfigDir()
	var from string
	fromSet, extract, dotEnds := false, false, true
	var rcpts []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		next := func() (string, bool) {
			if i+1 < len(args) {
				i++
				return args[i], true
			}
			return "", false
		}
		switch {
		case a == "--":
			rcpts = append(rcpts, args[i+1:]...)
			i = len(args)
		case a == "-c" || a == "-C":
			v, ok := next()
			if !ok {
				fmt.Fprintln(stderr, "mailtee sendmail: -c needs a directory")
				return exitBadData
			}
			dir = v
		case a == "-f" || a == "-r":
			v, ok := next()
			if !ok {
				fmt.Fprintln(stderr, "mailtee sendmail: -f needs an address")
				return exitBadData
			}
			from, fromSet = v, true
		case strings.HasPrefix(a, "-f") || strings.HasPrefix(a, "-r") && len(a) > 2:
			from, fromSet = a[2:], true
		case a == "-t":
			extract = true
		case a == "-i" || a == "-oi":
			dotEnds = false
		case a == "-F" || a == "-N" || a == "-R" || a == "-V" || a == "-B" || a == "-O" || a == "-o":
			next()
		case strings.HasPrefix(a, "-o") || strings.HasPrefix(a, "-F") || strings.HasPrefix(a, "-N") ||
			strings.HasPrefix(a, "-R") || strings.HasPrefix(a, "-V") || strings.HasPrefix(a, "-B") || a == "-v" || a == "-m":
			// accepted and ignored, as by Postfix
		case strings.HasPrefix(a, "-b"):
			fmt.Fprintf(stderr, "mailtee sendmail: %s is not supported (only message submission is)\n", a)
			return exitBadData
		case strings.HasPrefix(a, "-") && len(a) > 1:
			fmt.Fprintf(stderr, "mailtee sendmail: unknown option %s\n", a)
			return exitBadData
		default:
			rcpts = append(rcpts, a)
		}
	}
	cfg, err := config.Load(dir)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee sendmail: %v\n", err)
		return exitBadData
	}
	origin := cfg.Get("myorigin")
	body, err := readMessage(stdin, dotEnds)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee sendmail: reading the message: %v\n", err)
		return exitRuntime
	}
	if !fromSet {
		from = "root"
		if u, err := user.Current(); err == nil {
			from = u.Username
		}
	}
	// The sender is parsed as an SMTP client's would be: a CR or LF in
	// it would break the queue file's envelope, and a bounce to it would
	// be retried for ever.
	fa, err := address.Parse(from)
	if err != nil {
		fmt.Fprintf(stderr, "mailtee sendmail: bad sender address in -f: %v\n", err)
		return exitBadData
	}
	from = fa.String()
	if !fa.IsNull() && fa.Domain == "" {
		from += "@" + origin
	}
	hdr, rest := splitHeader(body)
	if extract {
		more, kept, err := extractRecipients(hdr)
		if err != nil {
			fmt.Fprintf(stderr, "mailtee sendmail: -t: %v\n", err)
			return exitBadData
		}
		rcpts, hdr = append(rcpts, more...), kept
	}
	if len(rcpts) == 0 {
		fmt.Fprintln(stderr, "mailtee sendmail: no recipients specified")
		return exitBadData
	}
	env := &envelope.Envelope{From: from, ClientName: "localhost", Protocol: "local", Arrival: time.Now()}
	for _, r := range rcpts {
		a, err := address.Parse(r)
		if err != nil || a.IsNull() {
			fmt.Fprintf(stderr, "mailtee sendmail: bad recipient %q: %v\n", r, err)
			return exitBadData
		}
		addr := a.String()
		if a.Domain == "" {
			addr += "@" + origin
		}
		env.Rcpts = append(env.Rcpts, envelope.Rcpt{Addr: addr, Orig: r})
	}
	var msg bytes.Buffer
	msg.Write(hdr)
	msg.Write(rest)
	// As Postfix's pickup hands sendmail's mail to cleanup: the same
	// rewriting and BCC copies as for mail from SMTP clients.
	qdir := master.QueueDir(cfg)
	id, err := master.Submit(cfg, os.Getuid(), env, &msg, func(line string) { fmt.Fprintf(stderr, "mailtee sendmail: %s\n", line) })
	var refused *cleanup.Refusal
	if errors.As(err, &refused) {
		fmt.Fprintf(stderr, "mailtee sendmail: %v\n", err)
		return exitBadData
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailtee sendmail: cannot queue the message in %s: %v\n", qdir, err)
		return exitRuntime
	}
	if _, err := master.Control(qdir, "pickup "+id); err != nil && !errors.Is(err, master.ErrNoServer) {
		fmt.Fprintf(stderr, "mailtee sendmail: queued as %s, but the server did not take it yet: %v\n", id, err)
	}
	return exitOK
}

// readMessage reads the message, turning line endings into CRLF. Unless
// -i was given, a line with a single "." ends it, as in sendmail.
func readMessage(r io.Reader, dotEnds bool) ([]byte, error) {
	var out bytes.Buffer
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			text := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
			if dotEnds && text == "." {
				break
			}
			out.WriteString(text)
			out.WriteString("\r\n")
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

// splitHeader splits at the first empty line; a message with no header
// at all gets an empty header.
func splitHeader(b []byte) (hdr, rest []byte) {
	if bytes.HasPrefix(b, []byte("\r\n")) {
		return nil, b
	}
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return b[:i+2], b[i+2:]
	}
	// All header, or all body: a first line that is no header field
	// means there is no header.
	first, _, _ := bytes.Cut(b, []byte("\r\n"))
	if bytes.IndexByte(first, ':') <= 0 || bytes.ContainsAny(first[:bytes.IndexByte(first, ':')], " \t") {
		return nil, append([]byte("\r\n"), b...)
	}
	return b, []byte("\r\n")
}

// extractRecipients reads To, Cc and Bcc (-t) and drops Bcc from the
// header.
func extractRecipients(hdr []byte) ([]string, []byte, error) {
	m, err := mail.ReadMessage(bytes.NewReader(append(append([]byte{}, hdr...), '\r', '\n')))
	if err != nil {
		return nil, nil, err
	}
	var out []string
	for _, field := range []string{"To", "Cc", "Bcc"} {
		if m.Header.Get(field) == "" {
			continue
		}
		list, err := m.Header.AddressList(field)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %v", field, err)
		}
		for _, a := range list {
			out = append(out, a.Address)
		}
	}
	// Remove Bcc lines (and their continuations).
	var kept bytes.Buffer
	skip := false
	for _, line := range bytes.SplitAfter(hdr, []byte("\r\n")) {
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if !skip {
				kept.Write(line)
			}
			continue
		}
		skip = bytes.HasPrefix(bytes.ToLower(line), []byte("bcc:"))
		if !skip {
			kept.Write(line)
		}
	}
	return out, kept.Bytes(), nil
}
