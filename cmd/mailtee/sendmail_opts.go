package main

import (
	"fmt"
	"path/filepath"
	"strings"
)

// sendmail's modes, as Postfix's SM_MODE_* (src/sendmail/sendmail.c).
const (
	smEnqueue    = "enqueue"    // -bm, the default: queue the message
	smNewaliases = "newaliases" // -bi, -I, or started as newaliases
	smMailq      = "mailq"      // -bp, or started as mailq
	smFlush      = "flush"      // -q
	smSMTP       = "smtp"       // -bs: SMTP on standard input and output
	smIgnore     = "ignore"     // -bh, -bH: nothing to do
)

// sendmailOpts is sendmail's command line.
type sendmailOpts struct {
	mode      string
	dir       string // -C (main.cf or its directory), -c
	from      string // -f, -r
	fromSet   bool
	extract   bool // -t
	dotEnds   bool // false with -i, -oi
	aliasFile string
	siteFlush string // -qRsite
	idFlush   string // -qIid
	rcpts     []string
}

// sendmailArgOpts are the options of Postfix's sendmail that take a
// value (its GETOPT_LIST "A:B:C:F:GIL:N:O:R:UV:X:b:ce:f:h:imno:p:r:q:tvx"),
// and mailtee's -c DIR (a flag without value in Postfix, which ignores
// it; mailtee's commands all take -c DIR).
const sendmailArgOpts = "ABCFLNORVXbcefhopqr"

// sendmailLetters are the option letters of Postfix's sendmail
// (GETOPT_LIST, above): any other is a usage error.
const sendmailLetters = "ABCFGILNORUVXbcefhimnopqrtvx"

// parseSendmail reads sendmail's command line as Postfix's sendmail
// does, with glibc getopt's habits (options may follow the recipients,
// cluster, and take their value attached or as the next argument; "--"
// ends them). An error is a usage error (EX_USAGE). Options that change
// nothing mailtee does are accepted and ignored, as Postfix ignores
// those it does not know.
func parseSendmail(name string, args []string) (sendmailOpts, error) {
	o := sendmailOpts{mode: smEnqueue, dir: defaultConfigDir(), dotEnds: true}
	switch name {
	case "mailq":
		o.mode = smMailq
	case "newaliases":
		o.mode = smNewaliases
	}
	var daemon, verify bool
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			o.rcpts = append(o.rcpts, args[i+1:]...)
			i = len(args)
			continue
		case a == "-q":
			// Not getopt-compatible: -q alone flushes.
			o.mode = smFlush
			continue
		case a == "-XV" || a == "-V" && i+1 < len(args) && len(args[i+1]) == 2:
			// VERP (deprecated -V xy): accepted, not implemented.
			if a == "-V" {
				i++
			}
			continue
		case len(a) < 2 || a[0] != '-':
			o.rcpts = append(o.rcpts, a)
			continue
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			var val string
			if strings.IndexByte(sendmailArgOpts, c) >= 0 {
				val = a[j+1:]
				if val == "" {
					if i+1 == len(args) {
						return o, fmt.Errorf("option requires an argument -- '%c'", c)
					}
					i++
					val = args[i]
				}
				j = len(a) // the value took the rest
				if val == "" && strings.IndexByte("bq", c) >= 0 {
					return o, fmt.Errorf("option -%c needs a value", c)
				}
			}
			switch c {
			case 'C', 'c':
				// main.cf's path, or its directory (sendmail.c: the
				// directory of a path whose last element is main.cf).
				if filepath.Base(val) == "main.cf" {
					val = filepath.Dir(val)
				}
				o.dir = val
			case 'f', 'r':
				o.from, o.fromSet = val, true
			case 't':
				o.extract = true
			case 'i':
				o.dotEnds = false
			case 'I':
				o.mode = smNewaliases
			case 'n':
				return o, fmt.Errorf("-n option not supported")
			case 'B':
				if val != "8BITMIME" && val != "7BIT" {
					return o, fmt.Errorf("-B option needs 8BITMIME or 7BIT")
				}
			case 'X':
				return o, fmt.Errorf("unsupported: -X%s", val)
			case 'o':
				switch {
				case val == "i":
					o.dotEnds = false
				case strings.HasPrefix(val, "A"):
					if len(val) == 1 {
						return o, fmt.Errorf("-oA requires pathname")
					}
					o.aliasFile = val[1:]
				}
				// -odi, -oem, -om, -o7, -o8, ...: ignored, as by Postfix.
			case 'q':
				switch {
				case val[0] >= '0' && val[0] <= '9':
					// -q15m: a daemon's queue interval; Postfix exits 0
					// unless in daemon mode.
					o.mode = smIgnore
				case val[0] == 'R':
					if o.siteFlush = val[1:]; o.siteFlush == "" {
						return o, fmt.Errorf("specify: -qRsitename")
					}
				case val[0] == 'I':
					if o.idFlush = val[1:]; o.idFlush == "" {
						return o, fmt.Errorf("specify: -qIqueueid")
					}
				default:
					return o, fmt.Errorf("-q%c is not implemented", val[0])
				}
			case 'b':
				switch val[0] {
				case 'd', 'l':
					daemon = true
				case 'h', 'H':
					o.mode = smIgnore
				case 'i':
					o.mode = smNewaliases
				case 'm':
					o.mode = smEnqueue
				case 'p':
					o.mode = smMailq
				case 's':
					o.mode = smSMTP
				case 'v':
					verify = true
				default:
					return o, fmt.Errorf("unsupported: -b%c", val[0])
				}
			default:
				// -F, -G, -U, -v, -x, -m, -h, -e, -p, -L, -N, -R, -V, -O:
				// full name, submission kind, verbosity, DSN options:
				// accepted and ignored. A letter not in Postfix's
				// GETOPT_LIST is getopt's '?', a usage error
				// (sendmail.c): mail(1)'s "-s subject" given to
				// sendmail must not send to a user named subject.
				if strings.IndexByte(sendmailLetters, c) < 0 {
					return o, fmt.Errorf("invalid option -- '%c'; usage: %s [options]", c, name)
				}
			}
		}
	}
	switch {
	case daemon:
		return o, fmt.Errorf("-bd: mailtee's sendmail starts no daemon: run mailtee serve (systemctl start mailtee)")
	case verify:
		return o, fmt.Errorf("-bv: address verification is not implemented by mailtee (mailtee postmap -q and mailtee check show routing)")
	}
	if o.extract && o.mode != smEnqueue {
		return o, fmt.Errorf("-t can be used only in delivery mode")
	}
	if (o.siteFlush != "" || o.idFlush != "") && o.mode != smEnqueue {
		return o, fmt.Errorf("-qR and -qI can be used only in delivery mode")
	}
	if o.siteFlush != "" || o.idFlush != "" {
		if len(o.rcpts) > 0 {
			return o, fmt.Errorf("flush site requires no recipient")
		}
		o.mode = smFlush
	}
	if o.mode != smEnqueue && o.mode != smIgnore && len(o.rcpts) > 0 {
		what := map[string]string{smMailq: "display queue mode", smFlush: "flush queue mode", smNewaliases: "alias initialization mode", smSMTP: "stand-alone mode"}[o.mode]
		return o, fmt.Errorf("%s requires no recipient", what)
	}
	return o, nil
}
