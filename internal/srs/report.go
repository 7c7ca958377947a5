package srs

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
)

// Report is what a bounce to an SRS address says, read from its RFC 3464
// delivery status notification (multipart/report; report-type=
// delivery-status): the recipients that failed, and the Message-ID of
// the returned message (its headers, text/rfc822-headers or
// message/rfc822), by which the copy is found in the ledger.
type Report struct {
	// DSN says a message/delivery-status part was found.
	DSN        bool
	MessageID  string // of the returned message, with its <>; "" unknown
	Recipients []ReportRcpt
}

// ReportRcpt is one per-recipient field group of the DSN.
type ReportRcpt struct {
	Final, Original string // addresses, without their type ("rfc822;")
	Action          string // lower case: failed, delayed, delivered, relayed, expanded
	Status          string // "5.1.1"
	RemoteMTA       string // without its type ("dns;")
	Diagnostic      string // "550 5.1.1 ...", without its type ("smtp;")
}

// Limits on what is read of a bounce: a provider's DSN is small; a body
// beyond this is not looked into (it is still attached to the notice,
// within bounce_size_limit).
const (
	maxReport = 4 << 20
	maxParts  = 50
	maxDepth  = 3
)

// ParseReport reads a bounce. It never fails: what it cannot read is
// left out, and the caller says so (a bounce that is not a DSN is still
// a copy's failure).
func ParseReport(r io.Reader) Report {
	var rep Report
	msg, err := mail.ReadMessage(bufio.NewReader(io.LimitReader(r, maxReport)))
	if err != nil {
		return rep
	}
	parts := 0
	rep.walk(textproto.MIMEHeader(msg.Header), msg.Body, 0, &parts)
	return rep
}

func (rep *Report) walk(h textproto.MIMEHeader, body io.Reader, depth int, parts *int) {
	*parts++
	if depth > maxDepth || *parts > maxParts {
		return
	}
	ct, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		ct = "text/plain"
	}
	switch {
	case strings.HasPrefix(ct, "multipart/"):
		if params["boundary"] == "" {
			return
		}
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return
			}
			rep.walk(p.Header, p, depth+1, parts)
		}
	case ct == "message/delivery-status" || ct == "message/global-delivery-status":
		rep.DSN = true
		rep.readStatus(body)
	case ct == "text/rfc822-headers" || ct == "message/rfc822" || ct == "message/global" || ct == "message/global-headers":
		if rep.MessageID != "" {
			return
		}
		// The returned headers end the part when only they were
		// returned: make sure a header section ends.
		data, _ := io.ReadAll(io.LimitReader(body, maxReport))
		if !bytes.Contains(data, []byte("\n\n")) && !bytes.Contains(data, []byte("\r\n\r\n")) {
			data = append(data, "\r\n\r\n"...)
		}
		if m, err := mail.ReadMessage(bytes.NewReader(data)); err == nil {
			rep.MessageID = strings.TrimSpace(m.Header.Get("Message-Id"))
		}
	}
}

// readStatus reads the field groups of a delivery-status part: the
// per-message group, then one per recipient, separated by blank lines.
func (rep *Report) readStatus(body io.Reader) {
	tp := textproto.NewReader(bufio.NewReader(io.LimitReader(body, maxReport)))
	for n := 0; n < 1000; n++ {
		h, err := tp.ReadMIMEHeader()
		// The first group is the per-message fields (Reporting-MTA);
		// a recipient's group has Final-Recipient.
		if h.Get("Final-Recipient") != "" || h.Get("Original-Recipient") != "" {
			rep.Recipients = append(rep.Recipients, ReportRcpt{
				Final:      typed(h.Get("Final-Recipient")),
				Original:   typed(h.Get("Original-Recipient")),
				Action:     strings.ToLower(strings.TrimSpace(h.Get("Action"))),
				Status:     strings.TrimSpace(firstWord(h.Get("Status"))),
				RemoteMTA:  typed(h.Get("Remote-MTA")),
				Diagnostic: typed(h.Get("Diagnostic-Code")),
			})
		}
		if err != nil {
			return
		}
	}
}

// typed drops the type of "rfc822; addr", "smtp; 550 ...", "dns; host",
// and the blanks of folded lines.
func typed(v string) string {
	v = strings.Join(strings.Fields(v), " ")
	if t, rest, ok := strings.Cut(v, ";"); ok && !strings.ContainsAny(t, " <>@") {
		v = strings.TrimSpace(rest)
	}
	return strings.Trim(v, "<>")
}

func firstWord(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return ""
}

// Failed are the recipients whose Action is failed.
func (rep Report) Failed() []ReportRcpt {
	var out []ReportRcpt
	for _, r := range rep.Recipients {
		if r.Action == "failed" {
			out = append(out, r)
		}
	}
	return out
}
