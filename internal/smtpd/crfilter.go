package smtpd

// go-smtp v0.25.1's DATA reader (unchanged in v0.26.0) has two quirks
// with a bare CR, which mailtee refuses in content anyway:
//
//   - after CR CR LF it misses the start of the next line, so the "."
//     line of "<CR><CR><LF>.<CR><LF>" does not end the data: the session
//     hung until smtpd_timeout, where Postfix, which reads lines up to
//     LF, ends the data there;
//   - it drops a CR that follows a dot at the start of a line when no LF
//     follows ("\r\n.\rX" reached the backend as "\r\nX"), so that bare
//     CR was never seen and the content was silently changed.
//
// Rather than keep a patched copy of go-smtp, the plaintext stream is
// filtered before go-smtp reads it (conn.Read): the first CR of each CR CR
// becomes a space, which go-smtp's state machine takes as text, so the
// CR LF after it starts a line again; and any CR not followed by LF is
// recorded, so that the next message's content is refused for its bare
// CR at its end (bodyReader), whatever go-smtp passed on. Both
// replacements keep the byte count, so BDAT's chunk sizes still hold.
// What was recorded before a MAIL command is forgotten there, so only a
// transaction's own bare CRs refuse it (a client that sends its message
// before the 354 can have a CR CR in it read before MAIL, and so turned
// into a space but not refused).
//
// TLS sessions are filtered too: conn does STARTTLS itself (starttls.go).
type crFilter struct {
	held bool // the last read ended with a CR, not passed on yet
	bare bool // a CR not followed by LF went by
}

// filter rewrites p[:n] in place as described above; a CR at its end is
// held back until the next byte is known, unless final (the stream
// ended). It returns the number of bytes to pass on.
func (f *crFilter) filter(p []byte, n int, final bool) int {
	for i := 0; i < n; i++ {
		if p[i] != '\r' {
			continue
		}
		if i+1 == n {
			if final {
				f.bare = true
				return n
			}
			f.held = true
			return n - 1
		}
		switch p[i+1] {
		case '\n':
			i++
		case '\r':
			p[i] = ' '
			f.bare = true
		default:
			f.bare = true
		}
	}
	return n
}

// take reports whether a bare CR went by since the last take.
func (f *crFilter) take() bool {
	b := f.bare
	f.bare = false
	return b
}
