package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/test/internal/harness"
)

// The replies a client sees, compared with a real Postfix's: the same
// dialogue goes to a private Postfix 3.7 and to mailtee, both with the
// same myhostname and mail_name, and every reply must match once queue
// IDs are masked. EHLO's keyword lists differ (mailtee offers CHUNKING
// without VRFY, ETRN, DSN), so only its first line is compared.

// replyStep is one command (or a message's content, for "DATA:") and
// whether to compare only the first line of the reply.
type replyStep struct {
	cmd       string
	firstOnly bool
	// startTLS: after this step's reply, if it is a 220, the TLS
	// handshake, and the dialogue goes on over TLS.
	startTLS bool
}

// repliesDialogue is a session that touches every reply go-smtp would
// word on its own: greeting, HELO, EHLO, MAIL and RCPT out of sequence,
// bad syntax, an unknown command, a message, NOOP, RSET, QUIT.
var repliesDialogue = []replyStep{
	{cmd: ""}, // the greeting
	{cmd: "EHLO"},
	{cmd: "HELO"},
	{cmd: "HELO client.example"},
	{cmd: "EHLO client.example", firstOnly: true},
	{cmd: "RCPT TO:<user@test.example>"},
	{cmd: "DATA"},
	{cmd: "NOOP"},
	{cmd: "RSET"},
	{cmd: "MAIL FROM <a@outside.example>"},
	{cmd: "MAIL FROM:<a@outside.example>"},
	{cmd: "MAIL FROM:<a@outside.example>"},
	{cmd: "RCPT <user@test.example>"},
	{cmd: "DATA"},
	{cmd: "RCPT TO:<user@test.example>"},
	{cmd: "DATA x"},
	{cmd: "DATA"},
	{cmd: "BODY:Subject: replies\r\n\r\nhello\r\n.\r\n"},
	{cmd: "XFOO bar"},
	{cmd: "EXPN list"},
	{cmd: "HELP"},
	{cmd: "STARTTLS"},
	{cmd: "QUIT"},
}

// bareLFDialogue is smtpd_forbid_bare_newline = reject: content with a
// bare LF is refused and the session goes on; a command line that ends
// in one is refused and the session ends.
var bareLFDialogue = []replyStep{
	{cmd: ""},
	{cmd: "EHLO client.example", firstOnly: true},
	{cmd: "MAIL FROM:<a@outside.example>"},
	{cmd: "RCPT TO:<user@test.example>"},
	{cmd: "DATA"},
	{cmd: "BODY:Subject: bare\r\n\r\nline\nmore\r\n.\r\n"},
	{cmd: "NOOP"},
	{cmd: "BODY:MAIL FROM:<a@outside.example>\n"},
	{cmd: "NOOP"},
}

// overTLS is steps after EHLO and STARTTLS: the same replies must come
// over TLS, where mailtee does STARTTLS below go-smtp to keep its
// rewriting and checks. A MAIL right after STARTTLS, without a new
// EHLO, is taken by both (smtpd_helo_required = no).
func overTLS(steps []replyStep) []replyStep {
	out := []replyStep{steps[0], {cmd: "EHLO client.example", firstOnly: true}, {cmd: "STARTTLS x"}, {cmd: "STARTTLS", startTLS: true},
		{cmd: "MAIL FROM:<first@outside.example>"}, {cmd: "RSET"}}
	return append(out, steps[1:]...)
}

// runDialogue runs repliesDialogue against addr and returns each reply
// (all its lines, joined by "|").
func runDialogue(t *testing.T, addr string) []string {
	return runSteps(t, addr, repliesDialogue)
}

// runSteps runs a dialogue against addr and returns each reply (all its
// lines, joined by "|"; "EOF" once the server has hung up).
func runSteps(t *testing.T, addr string, steps []replyStep) []string {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	var c net.Conn = nc
	r := bufio.NewReader(c)
	var out []string
	for _, s := range steps {
		switch {
		case strings.HasPrefix(s.cmd, "BODY:"):
			fmt.Fprint(c, strings.TrimPrefix(s.cmd, "BODY:"))
		case s.cmd != "":
			fmt.Fprintf(c, "%s\r\n", s.cmd)
		}
		var lines []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				lines = append(lines, "EOF")
				break
			}
			line = strings.TrimRight(line, "\r\n")
			lines = append(lines, line)
			if len(line) < 4 || line[3] != '-' {
				break
			}
			if s.firstOnly {
				// Read the rest, keep the first.
				for len(line) >= 4 && line[3] == '-' {
					if line, err = r.ReadString('\n'); err != nil {
						break
					}
				}
				break
			}
		}
		out = append(out, strings.Join(lines, "|"))
		if s.startTLS && strings.HasPrefix(lines[0], "220 ") {
			tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true})
			if err := tc.Handshake(); err != nil {
				t.Fatalf("%s: TLS handshake: %v", addr, err)
			}
			c, r = tc, bufio.NewReader(tc)
		}
	}
	return out
}

var queueIDRe = regexp.MustCompile(`queued as [0-9A-Za-z]+`)

func TestRepliesAsPostfix(t *testing.T) {
	const common = "myhostname = mx.test.example\nmail_name = TestMTA\nmydestination = test.example\n"
	pf := newPostfix(t, "127.0.0.1", freePort(t))
	pf.start(common+"smtputf8_enable = yes\n", nil)
	in := newInstance(t, common, nil)
	logOnFailure(t, "mailtee", in)
	in.Start()

	want := runDialogue(t, pf.addr())
	got := runDialogue(t, in.Addr())
	for i, s := range repliesDialogue {
		w := queueIDRe.ReplaceAllString(want[i], "queued as ID")
		g := queueIDRe.ReplaceAllString(got[i], "queued as ID")
		if w != g {
			t.Errorf("%q: mailtee says %q, Postfix %q", s.cmd, g, w)
		}
	}
}

func TestBareNewlineRejectAsPostfix(t *testing.T) {
	const common = "myhostname = mx.test.example\nmydestination = test.example\nsmtpd_forbid_bare_newline = reject\nsmtpd_forbid_bare_newline_exclusions =\n"
	pf := newPostfix(t, "127.0.0.1", freePort(t))
	pf.start(common, nil)
	in := newInstance(t, common, nil)
	logOnFailure(t, "mailtee", in)
	in.Start()

	want := runSteps(t, pf.addr(), bareLFDialogue)
	got := runSteps(t, in.Addr(), bareLFDialogue)
	for i, s := range bareLFDialogue {
		if i == 0 {
			continue // the banners name Postfix and mailtee
		}
		if want[i] != got[i] {
			t.Errorf("%q: mailtee says %q, Postfix %q", s.cmd, got[i], want[i])
		}
	}
}

// The same dialogues over STARTTLS, both servers with the same
// certificate (smtpd_tls_security_level = may).
func TestRepliesAsPostfixOverTLS(t *testing.T) {
	certFile, keyFile, _ := harness.TestCert(t, t.TempDir(), "mx.test.example")
	tlsCf := "smtpd_tls_security_level = may\nsmtpd_tls_cert_file = " + certFile + "\nsmtpd_tls_key_file = " + keyFile + "\n"
	for _, tc := range []struct {
		name   string
		common string
		steps  []replyStep
	}{
		{"replies", "myhostname = mx.test.example\nmail_name = TestMTA\nmydestination = test.example\n", overTLS(repliesDialogue)},
		{"bare LF", "myhostname = mx.test.example\nmail_name = TestMTA\nmydestination = test.example\nsmtpd_forbid_bare_newline = reject\nsmtpd_forbid_bare_newline_exclusions =\n", overTLS(bareLFDialogue)},
		// CVE-2011-0411: commands pipelined after STARTTLS in plaintext
		// are discarded, by both.
		{"injected", "myhostname = mx.test.example\nmail_name = TestMTA\nmydestination = test.example\n", []replyStep{
			{cmd: ""}, {cmd: "EHLO client.example", firstOnly: true},
			{cmd: "STARTTLS\r\nMAIL FROM:<mallory@outside.example>\r\nRCPT TO:<user@test.example>", startTLS: true},
			{cmd: "RCPT TO:<user@test.example>"}, {cmd: "NOOP"}, {cmd: "QUIT"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pf := newPostfix(t, "127.0.0.1", freePort(t))
			pf.start(tc.common+"smtputf8_enable = yes\n"+tlsCf, nil)
			in := newInstance(t, tc.common+tlsCf, nil)
			logOnFailure(t, "mailtee", in)
			in.Start()

			want := runSteps(t, pf.addr(), tc.steps)
			got := runSteps(t, in.Addr(), tc.steps)
			for i, s := range tc.steps {
				w := queueIDRe.ReplaceAllString(want[i], "queued as ID")
				g := queueIDRe.ReplaceAllString(got[i], "queued as ID")
				if w != g {
					t.Errorf("%d %q: mailtee says %q, Postfix %q", i, s.cmd, g, w)
				}
			}
		})
	}
}
