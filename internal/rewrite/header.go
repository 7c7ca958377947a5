package rewrite

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"

	"github.com/mailtee/mailtee/internal/address"
)

// The headers whose addresses cleanup(8) rewrites, from Postfix's
// src/global/header_opts.c: HDR_OPT_SENDER headers take the header_sender
// class, HDR_OPT_RECIP and HDR_OPT_XRECIP headers header_recipient.
var headerClass = map[string]int{
	"disposition-notification-to": classHdrFrom,
	"errors-to":                   classHdrFrom,
	"from":                        classHdrFrom,
	"mail-followup-to":            classHdrFrom,
	"reply-to":                    classHdrFrom,
	"resent-from":                 classHdrFrom,
	"resent-sender":               classHdrFrom,
	"return-path":                 classHdrFrom,
	"return-receipt-to":           classHdrFrom,
	"sender":                      classHdrFrom,

	"apparently-to":   classHdrRcpt,
	"bcc":             classHdrRcpt,
	"cc":              classHdrRcpt,
	"resent-bcc":      classHdrRcpt,
	"resent-cc":       classHdrRcpt,
	"resent-reply-to": classHdrRcpt, // sic: HDR_OPT_RECIP in Postfix
	"resent-to":       classHdrRcpt,
	"to":              classHdrRcpt,
}

// foldWidth is where a rewritten header is folded, RFC 5322's
// recommended 78 characters.
const foldWidth = 78

// Header rewrites the addresses in the sender and recipient headers of a
// message header section (the bytes up to and including the empty line;
// anything after it is copied as is): @$myorigin is appended to an
// address without a domain, then canonical mapping and masquerading apply
// per the header_sender and header_recipient classes, as cleanup(8) does
// in cleanup_rewrite_sender and cleanup_rewrite_recip. Virtual aliases do
// not apply to headers.
//
// Postfix rewrites the headers only of mail from Postfix sendmail, from
// clients in local_header_rewrite_clients, or when
// remote_header_rewrite_domain is set: the caller decides whether to call
// Header at all.
//
// Only the address specifications change: display names, comments and
// group names stay as they were. A header with an address that does not
// parse, or with a syntax error, is left untouched, as are headers whose
// addresses do not change; a rewritten header is unfolded and then folded
// again after commas. Header returns hdr itself when nothing changed.
func (r *Rewriter) Header(ctx context.Context, hdr []byte) ([]byte, error) {
	if !r.rewritesHeaders() {
		return hdr, nil
	}
	var out []byte // nil until a field changes
	done := 0      // hdr[:done] is in out
	pos := 0
	for pos < len(hdr) {
		end := lineEnd(hdr, pos)
		if line := hdr[pos:end]; string(line) == "\r\n" || string(line) == "\n" {
			break // end of the header section
		}
		for end < len(hdr) && (hdr[end] == ' ' || hdr[end] == '\t') {
			end = lineEnd(hdr, end)
		}
		nf, changed, err := r.field(ctx, hdr[pos:end])
		if err != nil {
			return nil, err
		}
		if changed {
			if out == nil {
				out = make([]byte, 0, len(hdr)+64)
			}
			out = append(out, hdr[done:pos]...)
			out = append(out, nf...)
			done = end
		}
		pos = end
	}
	if out == nil {
		return hdr, nil
	}
	return append(out, hdr[done:]...), nil
}

// rewritesHeaders reports whether Header could change anything.
func (r *Rewriter) rewritesHeaders() bool {
	if r.o.Myorigin != "" {
		return true
	}
	for _, class := range []int{classHdrFrom, classHdrRcpt} {
		if r.o.Canonical != nil && r.canon&class != 0 || len(r.masqDoms) > 0 && r.masq&class != 0 {
			return true
		}
	}
	return r.o.SenderCanonical != nil && r.sendCanon&classHdrFrom != 0 ||
		r.o.RecipientCanonical != nil && r.rcptCanon&classHdrRcpt != 0
}

func lineEnd(b []byte, pos int) int {
	if i := bytes.IndexByte(b[pos:], '\n'); i >= 0 {
		return pos + i + 1
	}
	return len(b)
}

// field rewrites one header field (name, value and continuation lines,
// with its line ending). changed is false when f must stay as it is.
func (r *Rewriter) field(ctx context.Context, f []byte) ([]byte, bool, error) {
	colon := bytes.IndexByte(f, ':')
	if colon <= 0 {
		return nil, false, nil
	}
	name := bytes.TrimRight(f[:colon], " \t")
	if len(name) == 0 {
		return nil, false, nil
	}
	for _, c := range name {
		if c <= ' ' || c >= 0x7f {
			return nil, false, nil
		}
	}
	class, ok := headerClass[strings.ToLower(string(name))]
	if !ok {
		return nil, false, nil
	}
	body, term := f[colon+1:], ""
	switch {
	case bytes.HasSuffix(body, []byte("\r\n")):
		body, term = body[:len(body)-2], "\r\n"
	case bytes.HasSuffix(body, []byte("\n")):
		body, term = body[:len(body)-1], "\n"
	}
	value := unfold(body)
	toks, cut, err := lex(value, r.tokenLimit)
	if err != nil {
		return nil, false, nil
	}
	if cut < len(value) {
		// header_address_token_limit: Postfix's tokenizer stops there
		// (tok822_scan_limit), and a rewritten header is written from
		// the tokens it read, so the rest is lost. The address the
		// limit cuts in two is not parsed.
		commas := topCommas(toks)
		if len(commas) == 0 {
			return nil, false, nil
		}
		toks = toks[:commas[len(commas)-1]]
	}
	spans, err := addrSpecs(toks)
	if err != nil {
		return nil, false, nil
	}
	addrs := make([]address.Address, len(spans))
	for i, sp := range spans {
		a, err := address.Parse(value[sp.start:sp.end])
		if err != nil || a.Routed {
			return nil, false, nil
		}
		addrs[i] = a
	}
	var b strings.Builder
	last := 0
	for i, a := range addrs {
		n, err := r.headerAddr(ctx, a, class)
		if err != nil {
			return nil, false, err
		}
		if n.Local == a.Local && n.Domain == a.Domain {
			continue
		}
		b.WriteString(value[last:spans[i].start])
		b.WriteString(n.String())
		last = spans[i].end
	}
	if last == 0 {
		return nil, false, nil
	}
	b.WriteString(value[last:cut])
	return fold(f[:colon+1], b.String(), term), true, nil
}

// headerAddr rewrites one header address in the header_sender or
// header_recipient class.
func (r *Rewriter) headerAddr(ctx context.Context, a address.Address, class int) (address.Address, error) {
	if a.IsNull() {
		return a, nil
	}
	a = r.qualify(a)
	var err error
	if class == classHdrFrom {
		a, err = r.canonical(ctx, a, class, r.sendCanon, r.o.SenderCanonical, "sender_canonical_maps")
	} else {
		a, err = r.canonical(ctx, a, class, r.rcptCanon, r.o.RecipientCanonical, "recipient_canonical_maps")
	}
	if err != nil {
		return a, err
	}
	if r.masq&class != 0 {
		a = r.masquerade(a)
	}
	return a, nil
}

// unfold removes the line breaks of continuation lines (RFC 5322 2.2.3);
// the whitespace that follows each stays.
func unfold(b []byte) string {
	if bytes.IndexByte(b, '\n') < 0 {
		return string(b)
	}
	s := strings.ReplaceAll(string(b), "\r\n", "")
	return strings.ReplaceAll(s, "\n", "")
}

// fold writes name, value and term, breaking the value into lines of at
// most foldWidth characters where it can: before the whitespace that
// follows a comma between addresses, so that unfolding gives value back.
// Where no whitespace follows the comma, a space is added.
func fold(name []byte, value, term string) []byte {
	eol := term
	if eol == "" {
		eol = "\r\n"
	}
	out := make([]byte, 0, len(name)+len(value)+len(term)+16)
	out = append(out, name...)
	n := len(name)
	for i, p := range pieces(value) {
		// Never a line of blanks alone: it would read as the end of the
		// header.
		if i > 0 && n+len(p) > foldWidth && strings.Trim(p, " \t") != "" {
			out = append(out, eol...)
			n = 0
			if p[0] != ' ' && p[0] != '\t' {
				out = append(out, ' ')
				n = 1
			}
		}
		out = append(out, p...)
		n += len(p)
	}
	return append(out, term...)
}

// pieces splits value after each comma between addresses; empty pieces
// are dropped.
func pieces(value string) []string {
	toks, _, err := lex(value, 0)
	if err != nil {
		return []string{value}
	}
	var out []string
	start := 0
	for _, i := range topCommas(toks) {
		out = append(out, value[start:toks[i].end])
		start = int(toks[i].end)
	}
	if start < len(value) {
		out = append(out, value[start:])
	}
	return out
}

// Token kinds of RFC 5322 structured header text (Postfix's tok822).
const (
	tAtom    = iota // atom or dot-atom text, 8-bit included
	tQuoted         // "quoted string"
	tComment        // (comment), nested
	tLiteral        // [domain literal]
	tSpace          // run of blanks
	tSpecial        // one of < > @ , ; :
)

// token is small: a header of header_size_limit bytes may have as many.
type token struct {
	kind       uint8
	c          byte  // the character of a tSpecial
	start, end int32 // byte offsets in the text
}

type span struct{ start, end int }

var errSyntax = errors.New("address syntax error")

// lex splits structured header text into tokens. Unbalanced quotes,
// comments or brackets, and line breaks, are errors. With limit > 0 it
// stops after limit tokens as Postfix's tok822_scan_limit counts them
// (blanks are none; each of "." "%" "!" "|" in an atom is one, and so is
// each run of text between them), and cut is where it stopped; otherwise
// cut is len(s).
func lex(s string, limit int) (toks []token, cut int, err error) {
	if len(s) > math.MaxInt32 {
		return nil, 0, errSyntax
	}
	n := 0 // tokens as Postfix counts them
	more := func() bool { n++; return limit <= 0 || n <= limit }
	// Stopped at the limit, lex cuts after the last token it read: blanks
	// there would make a rewritten header end in a blank line.
	stop := func(at int) ([]token, int, error) {
		if k := len(toks) - 1; k >= 0 && toks[k].kind == tSpace {
			toks, at = toks[:k], int(toks[k].start)
		}
		return toks, at, nil
	}
	add := func(kind uint8, c byte, start, end int) {
		toks = append(toks, token{kind: kind, c: c, start: int32(start), end: int32(end)})
	}
	for i := 0; i < len(s); {
		c := s[i]
		start := i
		if c != ' ' && c != '\t' && !isAtomChar(c) && !more() {
			return stop(start)
		}
		switch {
		case c == ' ' || c == '\t':
			for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
				i++
			}
			add(tSpace, 0, start, i)
		case c == '"' || c == '[':
			closer := byte('"')
			kind := uint8(tQuoted)
			if c == '[' {
				closer, kind = ']', tLiteral
			}
			i++
			for ; i < len(s) && s[i] != closer; i++ {
				switch {
				case s[i] == '\\':
					i++
				case s[i] == '\r' || s[i] == '\n' || c == '[' && s[i] == '[':
					return nil, 0, errSyntax
				}
			}
			if i >= len(s) {
				return nil, 0, errSyntax
			}
			i++
			add(kind, 0, start, i)
		case c == '(':
			depth := 0
			for ; i < len(s); i++ {
				switch s[i] {
				case '\\':
					i++
					continue
				case '(':
					depth++
				case ')':
					depth--
				case '\r', '\n':
					return nil, 0, errSyntax
				}
				if depth == 0 {
					break
				}
			}
			if i >= len(s) {
				return nil, 0, errSyntax
			}
			i++
			add(tComment, 0, start, i)
		case strings.IndexByte("<>@,;:", c) >= 0:
			i++
			add(tSpecial, c, start, i)
		case c == ')' || c == ']' || c == '\r' || c == '\n':
			return nil, 0, errSyntax
		default:
			for ; i < len(s) && isAtomChar(s[i]); i++ {
				// A Postfix token starts at an operator and after one.
				if (i == start || atomOps(s[i]) || atomOps(s[i-1])) && !more() {
					if i > start {
						add(tAtom, 0, start, i)
					}
					return stop(i)
				}
			}
			add(tAtom, 0, start, i)
		}
	}
	return toks, len(s), nil
}

// isAtomChar reports a byte of atom or dot-atom text (8-bit included).
func isAtomChar(c byte) bool { return strings.IndexByte(" \t\"[()<>@,;:]\r\n", c) < 0 }

// atomOps reports the characters inside atom text that Postfix's
// tokenizer takes as tokens of their own (tok822_opchar).
func atomOps(c byte) bool { return c == '.' || c == '%' || c == '!' || c == '|' }

// addrSpecs finds the address specifications in an RFC 5322 address
// list: the route-addr inside <...> of "name <addr>", or a bare addr-spec,
// in the list and inside groups ("name: addr, addr;"). Addresses with a
// source route are skipped (left as they are); an empty <> has no address.
func addrSpecs(toks []token) ([]span, error) {
	var spans []span
	inGroup := false
	start := 0
	for i := 0; i <= len(toks); i++ {
		if i < len(toks) {
			t := toks[i]
			if t.kind != tSpecial {
				continue
			}
			switch t.c {
			case '<':
				// Skip to the '>': specials inside belong to the route.
				for i++; i < len(toks) && !(toks[i].kind == tSpecial && toks[i].c == '>'); i++ {
					if toks[i].kind == tSpecial && toks[i].c == '<' {
						return nil, errSyntax
					}
				}
				if i == len(toks) {
					return nil, errSyntax
				}
				continue
			case '>':
				return nil, errSyntax
			case ':':
				if inGroup {
					return nil, errSyntax
				}
				inGroup, start = true, i+1 // the group name is no address
				continue
			case ';':
				if !inGroup {
					return nil, errSyntax
				}
				inGroup = false
			case ',':
			default: // '@' is part of an address
				continue
			}
		}
		item := toks[start:min(i, len(toks))]
		start = i + 1
		var (
			sp  span
			ok  bool
			err error
		)
		if hasAngle(item) {
			sp, ok, err = angleAddr(item)
		} else {
			sp, ok, err = bareAddr(item)
		}
		if err != nil {
			return nil, err
		}
		if ok {
			spans = append(spans, sp)
		}
	}
	return spans, nil
}

func hasAngle(item []token) bool {
	for _, t := range item {
		if t.kind == tSpecial && t.c == '<' {
			return true
		}
	}
	return false
}

// angleAddr returns the address inside the one <...> of item. Only blanks
// and comments may follow the '>'. An address with a source route
// (<@a,@b:user@c>) or an empty <> gives ok false.
func angleAddr(item []token) (sp span, ok bool, err error) {
	lt, gt := -1, -1
	for i, t := range item {
		if t.kind != tSpecial {
			continue
		}
		switch {
		case t.c == '<' && lt < 0:
			lt = i
		case t.c == '>' && lt >= 0 && gt < 0:
			gt = i
		case t.c == '<' || t.c == '>':
			return span{}, false, errSyntax
		case gt < 0 && (t.c == ',' || t.c == ':'):
			if lt >= 0 {
				return span{}, false, nil // source route
			}
		}
	}
	if lt < 0 || gt < 0 {
		return span{}, false, errSyntax
	}
	for _, t := range item[gt+1:] {
		if t.kind != tSpace && t.kind != tComment {
			return span{}, false, errSyntax
		}
	}
	return bareAddr(item[lt+1 : gt])
}

// bareAddr returns the addr-spec that item consists of, blanks and
// comments around it aside. An empty item has none; blanks or comments
// inside the address (more than one word), or more than one '@', are
// errors.
func bareAddr(item []token) (span, bool, error) {
	first, last := -1, -1
	for i, t := range item {
		if t.kind != tSpace && t.kind != tComment {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return span{}, false, nil
	}
	ats := 0
	for _, t := range item[first : last+1] {
		if t.kind == tSpace || t.kind == tComment || t.kind == tSpecial && t.c != '@' {
			return span{}, false, errSyntax
		}
		if t.kind == tSpecial {
			ats++
		}
	}
	if ats > 1 {
		return span{}, false, errSyntax // RFC 5322 has no '@' in an unquoted local part
	}
	return span{int(item[first].start), int(item[last].end)}, true, nil
}
