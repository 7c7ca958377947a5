package smtpd

import (
	"bytes"
)

// go-smtp words the replies it makes on its own in its own way ("250
// 2.0.0 Roger, accepting mail from <a@b>", "I'll make sure <c@d> gets
// this"), and has no hook to change them. Clients, monitoring and log
// tools know Postfix's words (src/smtpd/smtpd.c), so conn.Write puts
// Postfix's reply in place of each of go-smtp's that has a Postfix
// counterpart, by the reply's exact start. The rewrite happens after
// conn.Write has counted the reply (junkVerb, countReply), which match
// go-smtp's words.
//
// TLS sessions are rewritten too: conn does STARTTLS below go-smtp
// (starttls.go), so it always sees go-smtp's plaintext. Replies
// without a counterpart keep go-smtp's words: VRFY (Postfix echoes the
// address, which conn does not see), the MAIL and RCPT parameters go-smtp
// refuses, and BDAT's "Continue".

// rewrite is one of go-smtp's replies (by its start) and Postfix's.
type rewrite struct {
	goSMTP  string
	postfix string // "" for the ones that depend on the state (postfixReply)
}

// rewrites are go-smtp v0.25.1's own replies (conn.go) and the replies
// Postfix 3.7's smtpd.c gives in the same situation. The first match
// wins.
var rewrites = []rewrite{
	{"250 2.0.0 Roger, accepting mail from <", "250 2.1.0 Ok"},
	{"250 2.0.0 I'll make sure <", "250 2.1.5 Ok"},
	{"354 Go ahead. End your data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"},
	{"250 2.0.0 I have successfully done nothing", "250 2.0.0 Ok"},
	{"250 2.0.0 Session reset", "250 2.0.0 Ok"},
	// HELO and EHLO answer with the server's name (smtpd.c helo_cmd,
	// ehlo_cmd); "" means myhostname.
	{"250 2.0.0 Hello ", ""},
	{"250-Hello ", ""},
	// go-smtp refuses MAIL before HELO; Postfix would take it
	// (smtpd_helo_required = no) and refuses it only when HELO is
	// required, in these words.
	{"502 5.5.1 Please introduce yourself first.", "503 5.5.1 Error: send HELO/EHLO first"},
	{"502 5.5.1 Missing MAIL FROM command.", "503 5.5.1 Error: need MAIL command"},
	// DATA or BDAT without a recipient: "" is decided by whether MAIL was
	// given (smtpd.c data_cmd).
	{"502 5.5.1 Missing RCPT TO command.", ""},
	{"501 5.5.2 Was expecting MAIL arg syntax of FROM:<address>", "501 5.5.4 Syntax: MAIL FROM:<address>"},
	{"501 5.5.2 Was expecting RCPT arg syntax of TO:<address>", "501 5.5.4 Syntax: RCPT TO:<address>"},
	{"501 5.5.4 DATA command should not have any arguments", "501 5.5.4 Syntax: DATA"},
	{"501 5.5.4 Unable to parse SIZE as an integer", "501 5.5.4 Bad message size syntax"},
	// MAIL parameters without a value that go-smtp does not take
	// (SMTPUTF8 with smtputf8_enable = no): Postfix names the option.
	{"504 5.5.4 SMTPUTF8 is not implemented", "555 5.5.4 Unsupported option: SMTPUTF8"},
	{"504 5.5.4 REQUIRETLS is not implemented", "555 5.5.4 Unsupported option: REQUIRETLS"},
	{"552 5.3.4 Max message size exceeded", "552 5.3.4 Message size exceeds fixed limit"},
	// Commands go-smtp knows but does not implement are unknown to
	// Postfix.
	{"500 5.5.2 Syntax errors, ", "500 5.5.2 Error: command not recognized"},
	// A verb that is not four letters ("XYZZY"): go-smtp cannot split
	// it; to Postfix it is one more unknown command.
	{"501 5.5.2 Bad command", "500 5.5.2 Error: command not recognized"},
	{"502 5.5.1 SEND command not implemented", "500 5.5.2 Error: command not recognized"},
	{"502 5.5.1 SOML command not implemented", "500 5.5.2 Error: command not recognized"},
	{"502 5.5.1 SAML command not implemented", "500 5.5.2 Error: command not recognized"},
	{"502 5.5.1 EXPN command not implemented", "500 5.5.2 Error: command not recognized"},
	{"502 5.5.1 HELP command not implemented", "500 5.5.2 Error: command not recognized"},
	{"502 5.5.1 TURN command not implemented", "500 5.5.2 Error: command not recognized"},
	{"502 5.5.1 TLS not supported", "502 5.5.1 Error: command not implemented"},
	{"500 5.5.1 This is not a LMTP server", "500 5.5.2 Error: command not recognized"},
	// go-smtp hangs up after its fourth bad or unknown command (its
	// errThreshold), where Postfix waits for smtpd_hard_error_limit;
	// the words are those of Postfix's hang-up ("" is decided below).
	{"500 5.5.1 Too many errors. Quiting now", ""},
}

// postfixReply is postfixReply for what go-smtp writes on c: a reply
// line longer than go-smtp's buffer (4 KB: an RCPT with a long address
// is echoed in "I'll make sure <...>") comes in several writes; once its
// start is rewritten, the rest is dropped up to its LF.
func (c *conn) postfixReply(b []byte, inTx bool) []byte {
	c.mu.Lock()
	skip, mid := c.skipRest, c.midReply
	c.midReply = len(b) > 0 && b[len(b)-1] != '\n'
	c.mu.Unlock()
	if mid && !skip {
		// The rest of a line not rewritten: what it holds (an address
		// the client sent, echoed) is no reply of its own.
		return b
	}
	if skip {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return nil
		}
		c.mu.Lock()
		c.skipRest = false
		c.mu.Unlock()
		return b[i+1:]
	}
	if bytes.HasPrefix(b, []byte("501 5.5.2 Domain/address argument required for HELO")) {
		// HELO or EHLO without a name (smtpd.c helo_cmd, ehlo_cmd);
		// go-smtp says HELO for both.
		c.mu.Lock()
		verb := c.hello
		c.mu.Unlock()
		if verb == "" {
			verb = "HELO"
		}
		return []byte("501 Syntax: " + verb + " hostname\r\n")
	}
	out := postfixReply(b, c.srv.o.Hostname, inTx)
	if len(b) > 0 && b[len(b)-1] != '\n' && &out[0] != &b[0] {
		c.mu.Lock()
		c.skipRest = true
		c.mu.Unlock()
	}
	return out
}

// postfixReply returns Postfix's words for go-smtp's reply line b (with
// its CR LF), or b itself when there is nothing to rewrite. host is
// myhostname; inTx says whether MAIL was accepted.
func postfixReply(b []byte, host string, inTx bool) []byte {
	if len(b) < 4 {
		return b
	}
	for _, r := range rewrites {
		if !bytes.HasPrefix(b, []byte(r.goSMTP)) {
			continue
		}
		text := r.postfix
		switch r.goSMTP {
		case "250 2.0.0 Hello ":
			text = "250 " + host
		case "250-Hello ":
			text = "250-" + host
		case "500 5.5.1 Too many errors. Quiting now":
			text = "421 4.7.0 " + host + " Error: too many errors"
		case "502 5.5.1 Missing RCPT TO command.":
			text = "503 5.5.1 Error: need RCPT command"
			if inTx {
				text = "554 5.5.1 Error: no valid recipients"
			}
		}
		return append([]byte(text), "\r\n"...)
	}
	return b
}
