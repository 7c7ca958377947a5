package deliver

import (
	"bufio"
	"bytes"
	"io"
)

// SMTPUTF8 to a next hop, as Postfix's smtp(8) decides it
// (src/smtp/smtp_proto.c, DELIVERY_REQUIRES_SMTPUTF8; src/global/smtputf8.h):
//
//   - MAIL FROM carries SMTPUTF8 when the sender asked for it and the
//     server offers it; mail that did not ask goes without, even to a
//     server that offers it.
//   - A message whose sender asked for SMTPUTF8 needs it only when this
//     delivery has something that is not ASCII: the envelope sender, one
//     of the recipients of this delivery, or a header field. Such a
//     message to a server that does not offer SMTPUTF8 fails with 5.6.7
//     "SMTPUTF8 is required, but was not offered by host ..."; one that
//     only asked is sent without SMTPUTF8.

// needsSMTPUTF8 reports whether delivering msg to rcpts requires a server
// that offers SMTPUTF8. A header that cannot be read counts as needing
// it: the message then waits for a server that can take it whole.
func needsSMTPUTF8(msg *Message, rcpts []string) bool {
	if !msg.SMTPUTF8 {
		return false
	}
	if !isASCII(msg.From) {
		return true
	}
	for _, r := range rcpts {
		if !isASCII(r) {
			return true
		}
	}
	if msg.Open == nil {
		return true
	}
	body, err := msg.Open()
	if err != nil {
		return true
	}
	defer body.Close()
	ascii, err := headerIsASCII(body)
	return err != nil || !ascii
}

// headerIsASCII reads a message's header, up to the empty line that ends
// it, and reports whether it is all ASCII (Postfix's cleanup_out_header
// sets SMTPUTF8_FLAG_HEADER for any non-ASCII header).
func headerIsASCII(r io.Reader) (bool, error) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			err = nil // a long line: its rest is read as the next
		}
		if !isASCII(string(line)) {
			return false, nil
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 && len(line) > 0 && line[len(line)-1] == '\n' {
			return true, nil // the end of the header
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
