// Command provider-standin is a loopback stand-in for the receiving
// side of Google Workspace or Microsoft 365: it accepts mail, enforces
// the provider's per-mailbox and per-sender receiving limits, answers
// as the provider does when they are exceeded, and records what it
// accepted and refused. See internal/standin.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mailtee/mailtee/internal/ratelimit"
	"github.com/mailtee/mailtee/internal/standin"
)

const usage = `Usage: provider-standin [flags]

A stand-in for Google Workspace's or Microsoft 365's inbound SMTP, for
trying a sender's rate settings without touching the real provider. It
accepts every message, except that each recipient mailbox (and each
sender) may receive at most what the rate flags allow in any sliding
window; beyond that it answers as the provider does:

  google:        450 4.2.1 at RCPT (mailbox rate), 421 4.7.28 and hang
                 up (sender-address rate), 550 5.2.1 "disabled" while
                 a mailbox is locked out
  microsoft365:  550 5.2.122 at RCPT (mailbox rate, and while locked),
                 550 5.2.121 (sender-recipient pair rate)

STARTTLS is always offered (a self-signed certificate is made at start
unless -tls-cert/-tls-key are given). One log line per accepted or
refused recipient goes to standard error.

Example, Google's published limits scaled down 60 times:

  provider-standin -listen 127.0.0.1:2525 -flavor google \
      -mailbox-rate "1/1m, 60/1h" -lockout 10m -record standin.jsonl

and point the sender at it (main.cf: transport_maps =
inline:{ example.com=smtp:[127.0.0.1]:2525 }).

Flags:
`

func main() {
	fs := flag.NewFlagSet("provider-standin", flag.ExitOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	listen := fs.String("listen", "127.0.0.1:2525", "`address` to listen on")
	flavor := fs.String("flavor", standin.Google, "which provider to play: google or microsoft365")
	mailboxRate := fs.String("mailbox-rate", "60/1m, 3600/1h", "most messages each recipient mailbox may receive: sliding `windows` N/INTERVAL, separated by commas; \"none\" for no limit")
	senderRate := fs.String("sender-rate", "none", "most messages per sender address (google) or per sender-recipient pair (microsoft365; the provider's is 1200/1h), as -mailbox-rate `windows`")
	lockout := fs.Duration("lockout", 0, "a mailbox offered mail beyond its -mailbox-rate refuses everything, permanently, for this `duration` (Google locks for up to a day); 0 for no lockout")
	certFile := fs.String("tls-cert", "", "certificate `file` (PEM) for STARTTLS; with -tls-key")
	keyFile := fs.String("tls-key", "", "private key `file` (PEM) for STARTTLS; with -tls-cert")
	record := fs.String("record", "", "append a JSON line per accepted and per refused recipient to this `file`")
	storm := fs.String("storm", "", "answer every recipient with REPLY for DURATION after start, then behave: `REPLY:DURATION`, such as \"421 4.7.28:30s\" or \"550 5.2.122:1m\" (the provider's words are added)")
	fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fail("unexpected argument %q (see -h)", fs.Arg(0))
	}

	o := standin.Options{Addr: *listen, Flavor: *flavor, Lockout: *lockout}
	var err error
	if o.MailboxRate, err = ratelimit.ParseWindows(*mailboxRate); err != nil {
		fail("-mailbox-rate: %v", err)
	}
	if o.SenderRate, err = ratelimit.ParseWindows(*senderRate); err != nil {
		fail("-sender-rate: %v", err)
	}
	if *storm != "" {
		if _, d, err := standin.ParseStorm(*flavor, *storm); err != nil {
			fail("%v", err)
		} else {
			o.Storm, o.StormFor = stormReply(*storm), d
		}
	}
	if (*certFile == "") != (*keyFile == "") {
		fail("-tls-cert and -tls-key go together")
	}
	if *certFile != "" {
		pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			fail("-tls-cert/-tls-key: %v", err)
		}
		o.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	}
	logw := &postfixLog{w: os.Stderr, pid: os.Getpid()}
	o.Log = log.New(logw, "", 0)
	if *record != "" {
		f, err := os.OpenFile(*record, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			fail("-record: %v", err)
		}
		defer f.Close()
		o.Record = f
	}
	s, err := standin.Start(o)
	if err != nil {
		fail("%v", err)
	}
	o.Log.Printf("%s stand-in listening on %s, mailbox rate %s, sender rate %s, lockout %v",
		o.Flavor, s.Addr(), orNone(o.MailboxRate), orNone(o.SenderRate), o.Lockout)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	s.Close()
	o.Log.Printf("stopped: %d accepted, %d refused", len(s.Accepted()), len(s.Refused()))
}

// stormReply is the REPLY part of REPLY:DURATION.
func stormReply(s string) string {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return s[:i]
		}
	}
	return s
}

func orNone(ws []ratelimit.Window) string {
	if len(ws) == 0 {
		return "none"
	}
	return ratelimit.FormatWindows(ws)
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "provider-standin: "+format+"\n", a...)
	os.Exit(2)
}

// postfixLog prefixes each line as Postfix's syslog lines are shaped:
// "Mmm dd hh:mm:ss host provider-standin[pid]: ".
type postfixLog struct {
	w   io.Writer
	pid int
}

func (p *postfixLog) Write(b []byte) (int, error) {
	host, _ := os.Hostname()
	_, err := fmt.Fprintf(p.w, "%s %s provider-standin[%d]: %s", time.Now().Format(time.Stamp), host, p.pid, b)
	return len(b), err
}
