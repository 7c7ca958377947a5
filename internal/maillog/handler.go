package maillog

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Options configure a Handler. The zero value is usable.
type Options struct {
	// Host is the host name in each line; "" means the system's host name
	// up to the first dot, as syslog prints it.
	Host string
	// Program is the syslog program name (default "mailtee"), Postfix's
	// syslog_name.
	Program string
	// PID is the process ID in each line (default os.Getpid()).
	PID int
	// Level is the least level a record from Slog must have to be written
	// (default slog.LevelInfo). Mail log events are always written.
	Level slog.Leveler
	// Location is the time zone of the time stamp (default time.Local).
	Location *time.Location
}

var _ slog.Handler = (*Handler)(nil)

// Handler is a slog.Handler writing Postfix-shaped syslog lines. Safe for
// concurrent use: each record is one Write of one whole line.
type Handler struct {
	out       *output
	component string // from WithAttrs("component", ...)
	attrs     []byte // preformatted " key=value" from WithAttrs
	group     string // "g1.g2." prefix for keys, from WithGroup
}

// output is what all handlers derived from one NewHandler share.
type output struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string // " HOST PROGRAM/"
	pid    string
	level  slog.Leveler
	loc    *time.Location
}

// NewHandler returns a Handler writing to w.
func NewHandler(w io.Writer, opts *Options) *Handler {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Host == "" {
		o.Host = "localhost"
		if h, err := os.Hostname(); err == nil && h != "" {
			o.Host, _, _ = strings.Cut(h, ".")
		}
	}
	if o.Program == "" {
		o.Program = "mailtee"
	}
	if o.PID == 0 {
		o.PID = os.Getpid()
	}
	if o.Level == nil {
		o.Level = slog.LevelInfo
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	return &Handler{out: &output{
		w:      w,
		prefix: " " + sanitizeWord(o.Host) + " " + sanitizeWord(o.Program) + "/",
		pid:    strconv.Itoa(o.PID),
		level:  o.Level,
		loc:    o.Location,
	}}
}

// Enabled reports whether records at level are written.
func (h *Handler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.out.level.Level()
}

// WithAttrs returns a handler that adds attrs to each line; a top-level
// "component" attribute sets the component instead.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append([]byte(nil), h.attrs...)
	for _, a := range attrs {
		if h.group == "" && a.Key == ComponentKey {
			h2.component = a.Value.Resolve().String()
			continue
		}
		h2.attrs = appendAttr(h2.attrs, h.group, a)
	}
	return &h2
}

// WithGroup returns a handler that qualifies later attribute keys with
// name, as "name.key=value".
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.group = h.group + name + "."
	return &h2
}

// Handle writes r as one line.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	comp := h.component
	var attrs []byte
	r.Attrs(func(a slog.Attr) bool {
		if h.group == "" && a.Key == ComponentKey {
			comp = a.Value.Resolve().String()
			return true
		}
		attrs = appendAttr(attrs, h.group, a)
		return true
	})
	if comp == "" {
		comp = "master"
	}

	// slog would have a record without a time printed without one; a
	// syslog line always has one, so it gets the current time.
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	b := make([]byte, 0, 128+len(r.Message))
	b = t.In(h.out.loc).AppendFormat(b, time.Stamp)
	b = append(b, h.out.prefix...)
	b = append(b, sanitizeWord(comp)...)
	b = append(b, '[')
	b = append(b, h.out.pid...)
	b = append(b, "]: "...)
	switch {
	case r.Level >= slog.LevelError:
		b = append(b, "error: "...)
	case r.Level >= slog.LevelWarn:
		b = append(b, "warning: "...)
	case r.Level < slog.LevelInfo:
		b = append(b, "debug: "...)
	}
	b = appendText(b, r.Message)
	b = append(b, h.attrs...)
	b = append(b, attrs...)
	b = append(b, '\n')

	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	_, err := h.out.w.Write(b)
	return err
}

// appendAttr appends " key=value", flattening groups to "group.key".
func appendAttr(b []byte, group string, a slog.Attr) []byte {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, ga := range v.Group() {
			b = appendAttr(b, g, ga)
		}
		return b
	}
	if a.Key == "" {
		return b
	}
	b = append(b, ' ')
	b = appendText(b, group+a.Key)
	b = append(b, '=')
	var s string
	switch v.Kind() {
	case slog.KindTime:
		s = v.Time().Format(time.RFC3339Nano)
	default:
		s = v.String()
	}
	if s == "" || strings.ContainsAny(s, " =\"") || hasControl(s) {
		return strconv.AppendQuote(b, s)
	}
	return appendText(b, s)
}

// appendText appends s with what could break the one-line-per-event
// promise, or drive the terminal it is read on, made safe: control
// characters (CR and LF from a remote reply, ESC, C1 controls such as
// U+009B CSI) and invalid UTF-8 become '?', as Postfix's printable() does.
func appendText(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < ' ' || c == 0x7f {
				c = '?'
			}
			b = append(b, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || r < 0xa0 {
			b = append(b, '?')
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return b
}

// Printable is s as the log shows it (see appendText): for text that
// came from outside (a next hop's reply, an address) on its way to an
// administrator's terminal, as `mailtee queue list`.
func Printable(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= 0x7f {
			return string(appendText(make([]byte, 0, len(s)), s))
		}
	}
	return s
}

// OneLine keeps a text on one line: log lines and SMTP replies must not
// be split by what a client, a server's multi-line reply or a stack trace
// put in them. Line breaks become spaces; trailing ones go.
func OneLine(s string) string {
	s = strings.TrimRight(s, "\r\n")
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// sanitizeWord keeps a host, program or component name from breaking the
// "HOST PROGRAM/COMPONENT[PID]:" syntax that log parsers split on.
func sanitizeWord(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r <= ' ', r == 0x7f, r == '[', r == ']', r == ':':
			return '_'
		}
		return r
	}, s)
}
