package e2e

import (
	"fmt"
	"io"
	"log"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/mailtee/mailtee/test/internal/harness"
)

// gsmtpSink stands in for Google's MX in the ledger tests. The harness's
// Sink answers go-smtp's "250 2.0.0 OK: queued"; this one answers as
// Google does, "250 2.0.0 OK  <time> <id> - gsmtp", with an ID of its
// own per message, so that the test can follow each copy from the
// primary's report to the very transaction that took it. It refuses the
// addresses given to refuse with Google's 550 5.1.1 (an account not
// created at the provider yet).
type gsmtpSink struct {
	srv *smtp.Server

	mu     sync.Mutex
	n      int
	msgs   []gsmtpMsg
	refuse map[string]bool
}

// gsmtpMsg is one transaction the sink accepted.
type gsmtpMsg struct {
	ID        string // the ID in the 250 reply
	Reply     string // the whole reply text after "250 "
	From      string
	To        []string
	MessageID string // the Message-ID header, with its <>
	Data      string
}

// gsmtpRefusal is the text after "550 " for a refused recipient: Google's
// words, on one line (go-smtp puts no enhanced code on continuation lines).
const gsmtpRefusal = "5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser"

func newGsmtpSink(t *testing.T, addr string, refuse ...string) *gsmtpSink {
	t.Helper()
	_, _, cfg := testCert(t, t.TempDir(), "aspmx.l.google.com")
	s := &gsmtpSink{refuse: map[string]bool{}}
	for _, r := range refuse {
		s.refuse[strings.ToLower(r)] = true
	}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &gsmtpSession{s: s}, nil
	}))
	s.srv.Domain = "mx.google.com"
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.TLSConfig = cfg
	l := harness.Listen(t, addr)
	go s.srv.Serve(l)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// Messages returns what the sink accepted so far.
func (s *gsmtpSink) Messages() []gsmtpMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]gsmtpMsg(nil), s.msgs...)
}

// Find returns the transactions that delivered message messageID to rcpt.
func (s *gsmtpSink) Find(messageID, rcpt string) []gsmtpMsg {
	var out []gsmtpMsg
	for _, m := range s.Messages() {
		if m.MessageID != messageID {
			continue
		}
		for _, r := range m.To {
			if strings.EqualFold(r, rcpt) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

type gsmtpSession struct {
	s    *gsmtpSink
	from string
	to   []string
}

func (ss *gsmtpSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *gsmtpSession) Logout() error { return nil }
func (ss *gsmtpSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *gsmtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	refuse := ss.s.refuse[strings.ToLower(to)]
	ss.s.mu.Unlock()
	if refuse {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: strings.TrimPrefix(gsmtpRefusal, "5.1.1 ") + " x12-20020a05.99 - gsmtp"}
	}
	ss.to = append(ss.to, to)
	return nil
}

var messageIDHeader = regexp.MustCompile(`(?im)^Message-Id:\s*(<[^>\r\n]*>)`)

func (ss *gsmtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	ss.s.n++
	// Google's IDs look like "d2e1a72fcca58-4c3bd0c0b5bsi1234567a.55".
	id := fmt.Sprintf("g%04dsi%d.55", ss.s.n, 1700000000+ss.s.n)
	reply := fmt.Sprintf("OK  %d %s - gsmtp", 1765000000+ss.s.n, id)
	m := gsmtpMsg{ID: id, Reply: "2.0.0 " + reply, From: ss.from, To: append([]string(nil), ss.to...), Data: string(b)}
	if sm := messageIDHeader.FindStringSubmatch(m.Data); sm != nil {
		m.MessageID = sm[1]
	}
	ss.s.msgs = append(ss.s.msgs, m)
	// go-smtp sends a *SMTPError from Data as the reply, whatever its code.
	return &smtp.SMTPError{Code: 250, EnhancedCode: smtp.EnhancedCode{2, 0, 0}, Message: reply}
}
