package deliver

import (
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"
)

// DSN (RFC 3461) parameters a message carries on, as smtp(8) passes
// them on to a next hop that offers DSN (smtp_proto.c): RET and ENVID
// with MAIL FROM, NOTIFY and ORCPT with each RCPT TO. A value that is
// not well-formed is left out rather than fail the delivery (go-smtp
// refuses the whole command for one).

// RcptDSN are one recipient's DSN parameters.
type RcptDSN struct {
	Notify string // "NEVER" or a comma-separated list of SUCCESS, FAILURE, DELAY
	ORcpt  string // "type;address", the address xtext-decoded
}

// dsnMail adds RET and ENVID to opts.
func (m *Message) dsnMail(opts *smtp.MailOptions) {
	switch r := strings.ToUpper(m.Ret); r {
	case "FULL", "HDRS":
		opts.Return = smtp.DSNReturn(r)
	}
	if m.EnvID != "" && printableASCII(m.EnvID) && len(m.EnvID) <= 100 {
		opts.EnvelopeID = m.EnvID
	}
}

// dsnRcpt is the RcptOptions of the recipient with index i of the
// Deliver call, nil when it has no DSN parameter.
func (m *Message) dsnRcpt(i int) *smtp.RcptOptions {
	if i >= len(m.RcptDSN) {
		return nil
	}
	d := m.RcptDSN[i]
	var o smtp.RcptOptions
	if n := notifyList(d.Notify); n != nil {
		o.Notify = n
	}
	if typ, addr, ok := strings.Cut(d.ORcpt, ";"); ok && addr != "" {
		switch strings.ToUpper(strings.TrimSpace(typ)) {
		case "RFC822":
			if printableASCII(addr) {
				o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeRFC822, addr
			}
		case "UTF-8":
			if !strings.ContainsAny(addr, "\r\n") {
				o.OriginalRecipientType, o.OriginalRecipient = smtp.DSNAddressTypeUTF8, addr
			}
		}
	}
	if o.Notify == nil && o.OriginalRecipient == "" {
		return nil
	}
	return &o
}

// notifyList is NOTIFY's value as go-smtp takes it, nil when it is not
// valid (NEVER with anything else, an unknown word).
func notifyList(s string) []smtp.DSNNotify {
	if s == "" {
		return nil
	}
	var out []smtp.DSNNotify
	for _, w := range strings.Split(strings.ToUpper(s), ",") {
		switch w {
		case "NEVER", "SUCCESS", "FAILURE", "DELAY":
			out = append(out, smtp.DSNNotify(w))
		default:
			return nil
		}
	}
	if len(out) > 1 && strings.Contains(strings.ToUpper(s), "NEVER") {
		return nil
	}
	return out
}

// dsnMailParams and dsnRcptParams are the same parameters as text, for
// the pipelined transaction, which writes its own commands.
func (m *Message) dsnMailParams() string {
	var o smtp.MailOptions
	m.dsnMail(&o)
	var b strings.Builder
	if o.Return != "" {
		b.WriteString(" RET=" + string(o.Return))
	}
	if o.EnvelopeID != "" {
		b.WriteString(" ENVID=" + xtext(o.EnvelopeID))
	}
	return b.String()
}

func (m *Message) dsnRcptParams(i int) string {
	o := m.dsnRcpt(i)
	if o == nil {
		return ""
	}
	var b strings.Builder
	if o.Notify != nil {
		ws := make([]string, len(o.Notify))
		for k, n := range o.Notify {
			ws[k] = string(n)
		}
		b.WriteString(" NOTIFY=" + strings.Join(ws, ","))
	}
	if o.OriginalRecipient != "" {
		// utf-8 addresses as xtext's printable subset: RFC 6533's
		// utf-8-addr-xtext, what go-smtp sends without SMTPUTF8.
		b.WriteString(" ORCPT=" + string(o.OriginalRecipientType) + ";" + xtext(o.OriginalRecipient))
	}
	return b.String()
}

// xtext is RFC 3461's encoding: '+', '=' and what is not printable
// ASCII as "+XX".
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c > ' ' && c < 0x7f && c != '+' && c != '=' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "+%02X", c)
	}
	return b.String()
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
