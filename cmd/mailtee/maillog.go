package main

import (
	"io"
	"os"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/maillog"
)

// commandLog is the mail log for a command that changes the queue
// without the server (postsuper on a stopped system), as Postfix's
// postsuper logs "postfix/postsuper[PID]: ID: removed": maillog_file
// when main.cf sets it, else syslog. It returns nil when neither can be
// opened: the command's own messages on standard error still say what
// it did. close flushes and closes it.
func commandLog(cfg *config.Config) (log *maillog.Logger, close func()) {
	var w io.Writer
	closeFn := func() error { return nil }
	if f := cfg.Get("maillog_file"); f != "" {
		lf, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, func() {}
		}
		w, closeFn = lf, lf.Close
	} else {
		sl, err := maillog.NewSyslog(maillog.SyslogOptions{Facility: cfg.Get("syslog_facility")})
		if err != nil {
			return nil, func() {}
		}
		w, closeFn = sl, sl.Close
	}
	var program string
	if _, set := cfg.Set("syslog_name"); set {
		program = cfg.Get("syslog_name")
	}
	h := maillog.NewHandler(w, &maillog.Options{Host: cfg.Get("myhostname"), Program: program})
	return maillog.NewWithHandler(h), func() { closeFn() }
}
