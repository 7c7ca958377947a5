package maildrop

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
)

// What sendmail does to a message before it drops it: no table, no
// configuration beyond message_size_limit.

// ErrTooBig is ReadMessage's error for a message over the size limit.
var ErrTooBig = errors.New("message too big")

// ReadMessage reads a message from sendmail's standard input, turning line endings into CRLF. Unless
// -i was given, a line with a single "." ends it, as in sendmail.
// A positive limit bounds the message (Postfix's sendmail refuses one
// over message_size_limit before postdrop).
func ReadMessage(r io.Reader, dotEnds bool, limit int64) ([]byte, error) {
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
			if limit > 0 && int64(out.Len()) > limit {
				return nil, ErrTooBig
			}
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

// ExtractRecipients reads To, Cc and Bcc (sendmail -t) and drops Bcc from the
// header.
func ExtractRecipients(hdr []byte) ([]string, []byte, error) {
	m, err := mail.ReadMessage(bytes.NewReader(append(append([]byte{}, hdr...), '\r', '\n')))
	if err != nil {
		return nil, nil, err
	}
	var out []string
	for _, field := range []string{"To", "Cc", "Bcc"} {
		// Every such field, not only the first (as Postfix).
		for _, v := range m.Header[field] {
			list, err := headerAddresses(v)
			if err != nil {
				return nil, nil, fmt.Errorf("%s: %v", field, err)
			}
			out = append(out, list...)
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
