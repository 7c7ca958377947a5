package e2e

import (
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtee/mailtee/test/internal/harness"
)

// dsnSink is an SMTP sink offering DSN that records each transaction's
// envelope with its DSN parameters, as the next hop sees them.
type dsnSink struct {
	mu   sync.Mutex
	txns []string // "from RET ENVID | rcpt NOTIFY ORCPT | ... | Subject"
	srv  *smtp.Server
}

type dsnSession struct {
	s    *dsnSink
	head string
	rcpt []string
}

func (s *dsnSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &dsnSession{s: s}, nil }
func (ss *dsnSession) Reset()                                  { ss.head, ss.rcpt = "", nil }
func (ss *dsnSession) Logout() error                           { return nil }
func (ss *dsnSession) Mail(from string, o *smtp.MailOptions) error {
	ss.head = fmt.Sprintf("<%s> RET=%s ENVID=%s", from, o.Return, o.EnvelopeID)
	return nil
}
func (ss *dsnSession) Rcpt(to string, o *smtp.RcptOptions) error {
	n := make([]string, len(o.Notify))
	for i, x := range o.Notify {
		n[i] = string(x)
	}
	orcpt := ""
	if o.OriginalRecipient != "" {
		orcpt = string(o.OriginalRecipientType) + ";" + o.OriginalRecipient
	}
	ss.rcpt = append(ss.rcpt, fmt.Sprintf("<%s> NOTIFY=%s ORCPT=%s", to, strings.Join(n, ","), orcpt))
	return nil
}
func (ss *dsnSession) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	subj := ""
	for _, l := range strings.Split(string(b), "\r\n") {
		if strings.HasPrefix(l, "Subject: ") && subj == "" {
			subj = l
		}
		if strings.Contains(l, "c2@bounce.example") && strings.HasPrefix(l, "Final-Recipient") {
			subj += " [" + l + "]"
		}
	}
	ss.s.mu.Lock()
	ss.s.txns = append(ss.s.txns, ss.head+" | "+strings.Join(ss.rcpt, " | ")+" | "+subj)
	ss.s.mu.Unlock()
	return nil
}

func (s *dsnSink) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]string(nil), s.txns...)
	sort.Strings(out)
	return out
}

// pfSend submits one message to Postfix's smtpd with DSN parameters.
func pfSend(t *testing.T, addr, from string, rcpts []string, subject string, mo *smtp.MailOptions, ro map[string]*smtp.RcptOptions) {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from, mo); err != nil {
		t.Fatal(err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, ro[r]); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\n\r\nbody of %s\r\n", from, rcpts[0], subject, subject)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
}

// A real Postfix queue (deferred, held, a bounce notice pending in
// bounce/, DSN parameters, a maildrop file) is imported once into
// mailtee, which delivers every pending recipient exactly once, keeps
// the held one held, sends the notice and carries the DSN parameters
// to the next hop; a second import finds nothing, and Postfix's queue
// is left empty (a restarted Postfix delivers nothing again).
func TestImportPostfixQueue(t *testing.T) {
	sinkPort := harness.FreePort(t) // closed while Postfix runs: it defers
	pf := newPostfix(t, "127.0.0.1", harness.FreePort(t))
	transport := fmt.Sprintf("defer.example smtp:[127.0.0.1]:%d\nbounce.example error:5.1.1 no such user\n", sinkPort)
	pf.start(`transport_maps = hash:$config_directory/transport
smtpd_reject_unlisted_recipient = no
header_checks = regexp:{ {/^Subject: hold/ HOLD} }
`, map[string]string{"transport": transport})
	// No pickup (the maildrop file stays), and a bounce(8) that cannot
	// post its notice (the bounce/ log stays): what a Postfix stopped at
	// the wrong moment leaves.
	mc, err := os.ReadFile(filepath.Join(pf.etc, "master.cf"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(mc), "\n") {
		switch f := strings.Fields(l); {
		case len(f) > 0 && f[0] == "pickup":
			continue
		case len(f) > 0 && f[0] == "bounce":
			l += "\n  -o cleanup_service_name=nocleanup"
		}
		lines = append(lines, l)
	}
	if err := os.WriteFile(filepath.Join(pf.etc, "master.cf"), []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := pf.cmd("postfix", "-c", pf.etc, "reload"); err != nil {
		t.Fatalf("postfix reload: %v %s", err, out)
	}
	time.Sleep(time.Second)

	pfSend(t, pf.addr(), "alice@client.test", []string{"a1@defer.example", "a2@defer.example"}, "deferred", nil, nil)
	pfSend(t, pf.addr(), "bob@client.test", []string{"b1@defer.example"}, "hold me", nil, nil)
	pfSend(t, pf.addr(), "carol@client.test", []string{"c1@defer.example", "c2@bounce.example"}, "half bounced", nil, nil)
	pfSend(t, pf.addr(), "dave@client.test", []string{"d1@defer.example", "d2@defer.example"}, "dsn",
		&smtp.MailOptions{Return: smtp.DSNReturnHeaders, EnvelopeID: "env+42"},
		map[string]*smtp.RcptOptions{
			"d1@defer.example": {Notify: []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure}, OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: "orig-d1@client.test"},
			"d2@defer.example": {Notify: []smtp.DSNNotify{smtp.DSNNotifyNever}},
		})
	drop := exec.Command("/usr/sbin/sendmail", "-C", pf.etc, "-f", "erin@client.test", "m1@defer.example")
	drop.Stdin = strings.NewReader("Subject: dropped\n\ndropped while pickup was away\n")
	if out, err := drop.CombinedOutput(); err != nil {
		t.Fatalf("sendmail: %v %s", err, out)
	}
	for _, r := range []string{"to=<a2@defer.example>", "to=<c1@defer.example>", "to=<d2@defer.example>"} {
		pf.waitLog(r, "status=deferred")
	}
	pf.waitLog("to=<c2@bounce.example>", "status=bounced")
	pf.waitLog("status=deferred (bounce failed)")

	in := harness.NewInstance(t, fmt.Sprintf(`transport_maps = texthash:$config_directory/transport
data_directory = %s/data
maillog_file = %s/maillog
`, "DIR", "DIR"), map[string]string{
		"transport": fmt.Sprintf("defer.example smtp:[127.0.0.1]:%d\nclient.test smtp:[127.0.0.1]:%d\n", sinkPort, sinkPort),
	})
	cf := filepath.Join(in.Dir, "main.cf")
	b, _ := os.ReadFile(cf)
	os.WriteFile(cf, []byte(strings.ReplaceAll(string(b), "DIR/", in.Dir+"/")), 0o644)

	pfq := pf.path("queue")
	out, err := in.Run("", "import-postfix-queue", pfq)
	if err == nil || !strings.Contains(out, "Postfix is running") {
		t.Errorf("import with Postfix running: %v\n%s", err, out)
	}
	pf.stop()
	out, err = in.Run("", "import-postfix-queue", pfq)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	if !strings.Contains(out, ": 4 messages, 6 pending recipients, 1 bounce notices owed, 1 held, 1 maildrop files") {
		t.Errorf("summary:\n%s", out)
	}
	log, _ := os.ReadFile(filepath.Join(in.Dir, "maillog"))
	if !strings.Contains(string(log), "mailtee/import[") || !strings.Contains(string(log), ", from=<dave@client.test>, nrcpt=2 (imported from deferred)") {
		t.Errorf("import log:\n%s", log)
	}
	var left []string
	for _, q := range []string{"maildrop", "incoming", "active", "deferred", "hold", "bounce", "defer"} {
		filepath.WalkDir(filepath.Join(pfq, q), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				left = append(left, p)
			}
			return nil
		})
	}
	if len(left) > 0 {
		t.Errorf("left in Postfix's queue (a restarted Postfix would deliver them again): %v", left)
	}

	sink := &dsnSink{}
	sink.srv = smtp.NewServer(sink)
	sink.srv.Domain = "sink.test"
	sink.srv.EnableDSN = true
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", sinkPort))
	if err != nil {
		t.Fatal(err)
	}
	go sink.srv.Serve(l)
	t.Cleanup(func() { sink.srv.Close() })
	in.Start()
	t.Cleanup(in.Stop)
	harness.WaitUntil(t, "five transactions at the sink", 30*time.Second, func() bool { return len(sink.list()) >= 5 })
	time.Sleep(2 * time.Second) // nothing more may come
	got := sink.list()
	want := []string{
		"<> RET= ENVID= | <carol@client.test> NOTIFY= ORCPT= | Subject: Undelivered Mail Returned to Sender [Final-Recipient: rfc822; c2@bounce.example]",
		"<alice@client.test> RET= ENVID= | <a1@defer.example> NOTIFY= ORCPT=RFC822;a1@defer.example | <a2@defer.example> NOTIFY= ORCPT=RFC822;a2@defer.example | Subject: deferred",
		"<carol@client.test> RET= ENVID= | <c1@defer.example> NOTIFY= ORCPT=RFC822;c1@defer.example | Subject: half bounced",
		"<dave@client.test> RET=HDRS ENVID=env+42 | <d1@defer.example> NOTIFY=SUCCESS,FAILURE ORCPT=RFC822;orig-d1@client.test | <d2@defer.example> NOTIFY=NEVER ORCPT=RFC822;d2@defer.example | Subject: dsn",
		"<erin@client.test> RET= ENVID= | <m1@defer.example> NOTIFY= ORCPT= | Subject: dropped",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("the sink received:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	list, err := in.Run("", "queue", "list")
	if err != nil || !strings.Contains(list, "!") || !strings.Contains(list, "b1@defer.example") || !strings.Contains(list, "in 1 Request.") {
		t.Errorf("queue list: %v\n%s", err, list)
	}
	out, err = in.Run("", "import-postfix-queue", pfq)
	if err != nil || !strings.Contains(out, ": 0 messages, 0 pending recipients, 0 bounce notices owed, 0 held, 0 maildrop files") {
		t.Errorf("second import: %v\n%s", err, out)
	}

	// Postfix started again finds nothing to deliver: the sink gets no
	// second copy.
	if out, err := pf.cmd("script", "-qec", "postfix -c '"+pf.etc+"' start", "/dev/null"); err != nil {
		t.Fatalf("postfix start: %v %s", err, out)
	}
	pf.waitLog("daemon started")
	time.Sleep(3 * time.Second) // queue_run_delay = 1s
	if n := len(sink.list()); n != len(want) {
		t.Errorf("after Postfix restarted the sink has %d transactions, want %d:\n%s", n, len(want), strings.Join(sink.list(), "\n"))
	}
	if strings.Contains(pf.maillog(), "status=sent") {
		t.Errorf("the restarted Postfix delivered:\n%s", pf.maillog())
	}
}

// Imported while mailtee runs with a long queue_run_delay: the server
// is told of each message (the control socket's pickup) and delivers at
// once, not at its next rescan. The queue is the one Postfix 3.7.11
// wrote for pfqueue's tests.
func TestImportPostfixQueueIntoRunningServer(t *testing.T) {
	sink := harness.NewSink(t, "", nil)
	in := harness.NewInstance(t, "transport_maps = texthash:$config_directory/transport\nqueue_run_delay = 3600s\n", map[string]string{
		"transport": fmt.Sprintf("defer.example smtp:[127.0.0.1]:%d\nclient.test smtp:[127.0.0.1]:%d\n", sink.Port(), sink.Port()),
	})
	in.Start()
	t.Cleanup(in.Stop)
	pfq := filepath.Join(harness.TempDir(t), "postfix")
	if out, err := exec.Command("cp", "-a", "../../internal/pfqueue/testdata/queue", pfq).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	for _, d := range []string{"active", "incoming", "pid"} {
		os.MkdirAll(filepath.Join(pfq, d), 0o700)
	}
	out, err := in.Run("", "import-postfix-queue", pfq)
	if err != nil || !strings.Contains(out, ": 5 messages, 7 pending recipients, 1 bounce notices owed, 1 held, 2 maildrop files") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	want := map[string]int{"a1@defer.example": 1, "a2@defer.example": 1, "c1@defer.example": 2, "d1@defer.example": 1, "d2@defer.example": 1,
		"m1@defer.example": 1, "t1@defer.example": 1, "t2@defer.example": 1, "carol@client.test": 1}
	harness.WaitUntil(t, "every imported recipient at the sink", 20*time.Second, func() bool {
		got := sink.Counts()
		for r, n := range want {
			if got[r] < n {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second)
	if got := sink.Counts(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the sink received %v, want %v", got, want)
	}
}
