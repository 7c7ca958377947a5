package main

import (
	"fmt"
	"io"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/maildrop"
	"github.com/mailtee/mailtee/internal/master"
)

// sendmailSMTP is sendmail -bs: maildrop's SMTP session on standard
// input and output, each message dropped as sendmail drops one (with the
// caller's uid, checked again by the server's pickup).
func sendmailSMTP(name string, cfg *config.Config, stdin io.Reader, stdout io.Writer, stderr io.Writer) int {
	limit, _ := cfg.Int("message_size_limit")
	maxRcpt, _ := cfg.Int("smtpd_recipient_limit")
	host := cfg.Get("myhostname")
	banner, _ := cfg.Expand(cfg.Get("smtpd_banner"))
	if banner == "" {
		banner = host + " ESMTP " + cfg.Get("mail_name")
	}
	qdir, login := master.QueueDir(cfg), loginName()
	maildrop.ServeSMTP(stdin, stdout, maildrop.SMTPSession{
		Hostname: host, Banner: banner, SizeLimit: limit, MaxRcpt: int(maxRcpt),
		Drop: func(from string, rcpts []string, body []byte) error {
			return dropMessage(qdir, login, from, rcpts, body)
		},
		Warn: func(err error) {
			fmt.Fprintf(stderr, "%s: warning: cannot drop the message into maildrop: %v\n", name, err)
		},
	})
	return exitOK
}
