package maildrop

import (
	"errors"
	"mime"
	"net/mail"
	"strings"
)

// headerAddresses reads the addresses of a To/Cc/Bcc value for
// sendmail -t. RFC 5322 lists go through net/mail; what it refuses is
// read as Postfix's tok822 parser reads it (src/global/tok822_parse.c),
// for what cron, mail(1) and scripts write: a bare local name ("To:
// root", which cleanup completes with @$myorigin), a list of them, a
// route address with a phrase that is not RFC 5322 (`To: John Q.
// Public <jqp@example.org>`), comments in parentheses, and groups
// ("undisclosed-recipients:;"). An element with an unbalanced '<',
// '"' or '(' is an error.
func headerAddresses(v string) ([]string, error) {
	dec := mail.AddressParser{WordDecoder: &mime.WordDecoder{}}
	if list, err := dec.ParseList(v); err == nil {
		out := make([]string, 0, len(list))
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out, nil
	}
	var out []string
	for _, el := range splitOutside(v, ',') {
		// A group "name: a, b;": the display name goes, then the end.
		if name, rest, ok := cutOutside(el, ':'); ok && !strings.Contains(name, "<") {
			el = rest
		}
		el = strings.TrimSuffix(strings.TrimSpace(el), ";")
		el, err := dropComments(el)
		if err != nil {
			return nil, err
		}
		el = strings.TrimSpace(el)
		if i := strings.IndexByte(el, '<'); i >= 0 {
			j := strings.IndexByte(el[i:], '>')
			if j < 0 {
				return nil, errors.New("missing '>' in " + quoteShort(el))
			}
			el = strings.TrimSpace(el[i+1 : i+j])
		}
		if el == "" {
			continue
		}
		if strings.ContainsAny(el, " \t\r\n<>,") {
			return nil, errors.New("not an address: " + quoteShort(el))
		}
		out = append(out, el)
	}
	return out, nil
}

// splitOutside splits s at sep where it is outside quotes, angle
// brackets and comments.
func splitOutside(s string, sep byte) []string {
	var out []string
	start := 0
	for {
		_, rest, ok := cutOutside(s[start:], sep)
		if !ok {
			return append(out, s[start:])
		}
		end := len(s) - len(rest) - 1
		out = append(out, s[start:end])
		start = end + 1
	}
}

// cutOutside cuts s at the first sep outside quotes, angle brackets
// and comments.
func cutOutside(s string, sep byte) (before, after string, found bool) {
	quoted, angle, depth := false, false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			i++
		case quoted:
			quoted = c != '"'
		case c == '"':
			quoted = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case c == sep && !angle:
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// dropComments removes (comments), nested, outside quotes.
func dropComments(s string) (string, error) {
	var b strings.Builder
	quoted, depth := false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			if depth == 0 {
				b.WriteByte(c)
				b.WriteByte(s[i+1])
			}
			i++
			continue
		case depth == 0 && c == '"':
			quoted = !quoted
		case !quoted && c == '(':
			depth++
			continue
		case !quoted && c == ')' && depth > 0:
			depth--
			continue
		}
		if depth == 0 {
			b.WriteByte(c)
		}
	}
	if quoted || depth > 0 {
		return "", errors.New("unbalanced quote or comment in " + quoteShort(s))
	}
	return b.String(), nil
}

func quoteShort(s string) string {
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}
