package rewrite

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
)

// hdrBase rewrites headers as a host in example.com would: joe's login
// name to his full name (canonical), host names hidden (masquerading).
func hdrBase(t testing.TB) Options {
	o := base()
	o.Canonical = inline(t, "joe@example.com", "Joe.Bloggs@example.com")
	o.MasqueradeDomains = []string{"example.com"}
	return o
}

func TestHeader(t *testing.T) {
	cases := []struct {
		name, doc string
		opts      func(t *testing.T, o *Options)
		in, want  string
	}{{
		name: "sender header, display name kept",
		doc:  `postconf(5) masquerade_classes (default: envelope_sender, header_sender, header_recipient)`,
		in:   "From: \"Bloggs, Joe\" <joe@host.example.com>\r\n\r\n",
		want: "From: \"Bloggs, Joe\" <joe@example.com>\r\n\r\n",
	}, {
		name: "recipient headers, comments and groups kept",
		doc:  `postconf(5) masquerade_classes: header_recipient; Postfix rewrites the address nodes of the parsed header (cleanup_rewrite_recip) and keeps the rest`,
		in:   "To: ann@host.example.com (Ann), Team: bob@host.example.com, carl@remote.example;\r\nCc: <dora@a.b.example.com>\r\n\r\n",
		want: "To: ann@example.com (Ann), Team: bob@example.com, carl@remote.example;\r\nCc: <dora@example.com>\r\n\r\n",
	}, {
		name: "canonical mapping in headers",
		doc:  `canonical(5): "By default the canonical(5) mapping affects both message header addresses (i.e. addresses that appear inside messages) and message envelope addresses"`,
		in:   "From: Joe <joe@example.com>\r\nReply-To: joe@example.com\r\nTo: joe@example.com\r\n\r\n",
		want: "From: Joe <Joe.Bloggs@example.com>\r\nReply-To: Joe.Bloggs@example.com\r\nTo: Joe.Bloggs@example.com\r\n\r\n",
	}, {
		name: "unqualified addresses get @myorigin",
		doc:  `postconf(5) append_at_myorigin: "With locally submitted mail, append the string "@$myorigin" to mail addresses without domain information."`,
		in:   "From: root (Cron Daemon)\r\nTo: alice, bob@remote.example\r\n\r\n",
		want: "From: root@example.com (Cron Daemon)\r\nTo: alice@example.com, bob@remote.example\r\n\r\n",
	}, {
		name: "unrelated headers byte-exact",
		doc:  `src/global/header_opts.c: only HDR_OPT_SENDER and HDR_OPT_RECIP/XRECIP headers are address-rewritten`,
		in:   "Subject: mail for joe@host.example.com\r\nMessage-Id: <1@host.example.com>\r\nX-Original-To:  joe@host.example.com\r\n\r\n",
		want: "Subject: mail for joe@host.example.com\r\nMessage-Id: <1@host.example.com>\r\nX-Original-To:  joe@host.example.com\r\n\r\n",
	}, {
		name: "headers that do not parse are left alone",
		doc:  `mailtee: a header with a syntax error or an address that does not parse is kept as it is`,
		in:   "To: Joe Bloggs joe@host.example.com\r\nFrom: \"unbalanced <joe@host.example.com>\r\nCc: a@host.example.com, b@@host.example.com\r\n\r\n",
		want: "To: Joe Bloggs joe@host.example.com\r\nFrom: \"unbalanced <joe@host.example.com>\r\nCc: a@host.example.com, b@@host.example.com\r\n\r\n",
	}, {
		name: "the body is not touched",
		doc:  `cleanup(8) rewrites the primary message header only`,
		in:   "From: a@host.example.com\r\n\r\nFrom: b@host.example.com\r\n",
		want: "From: a@example.com\r\n\r\nFrom: b@host.example.com\r\n",
	}, {
		name: "header classes off",
		doc:  `postconf(5) masquerade_classes / canonical_classes: "What addresses are subject to address masquerading [canonical_maps address mapping]."`,
		opts: func(t *testing.T, o *Options) {
			o.MasqueradeClasses = []string{EnvelopeSender}
			o.CanonicalClasses = []string{EnvelopeSender, EnvelopeRecipient}
		},
		in:   "From: joe@example.com\r\nTo: a@host.example.com\r\n\r\n",
		want: "From: joe@example.com\r\nTo: a@host.example.com\r\n\r\n",
	}, {
		name: "header_recipient only",
		doc:  `postconf(5) masquerade_classes: "Specify zero or more of: envelope_sender, envelope_recipient, header_sender, header_recipient"`,
		opts: func(t *testing.T, o *Options) { o.MasqueradeClasses = []string{HeaderRecipient} },
		in:   "From: a@host.example.com\r\nTo: a@host.example.com\r\n\r\n",
		want: "From: a@host.example.com\r\nTo: a@example.com\r\n\r\n",
	}, {
		name: "sender canonical maps apply to sender headers only",
		doc:  `postconf(5) sender_canonical_maps: "Optional address mapping lookup tables for envelope and header sender addresses."`,
		opts: func(t *testing.T, o *Options) {
			o.Canonical = nil
			o.SenderCanonical = inline(t, "joe@example.com", "Joe.Bloggs@example.com")
		},
		in:   "Sender: joe@example.com\r\nCc: joe@example.com\r\n\r\n",
		want: "Sender: Joe.Bloggs@example.com\r\nCc: joe@example.com\r\n\r\n",
	}, {
		name: "virtual aliases do not apply to headers",
		doc:  `virtual(5): "Virtual aliasing is applied only to recipient envelope addresses, and does not affect message headers."`,
		opts: func(t *testing.T, o *Options) {
			o.VirtualAliases = inline(t, "ann@example.com", "ann@elsewhere.example")
		},
		in:   "To: ann@example.com\r\n\r\n",
		want: "To: ann@example.com\r\n\r\n",
	}, {
		name: "all of Postfix's sender and recipient headers",
		doc:  `src/global/header_opts.c: Resent-Reply-To is HDR_OPT_RECIP; Return-Path, Errors-To, Disposition-Notification-To are HDR_OPT_SENDER`,
		opts: func(t *testing.T, o *Options) { o.MasqueradeClasses = []string{HeaderRecipient} },
		in:   "Resent-Reply-To: a@h.example.com\r\nReturn-Path: <a@h.example.com>\r\nERRORS-TO: a@h.example.com\r\nresent-bcc: a@h.example.com\r\nApparently-To: a@h.example.com\r\n\r\n",
		want: "Resent-Reply-To: a@example.com\r\nReturn-Path: <a@h.example.com>\r\nERRORS-TO: a@h.example.com\r\nresent-bcc: a@example.com\r\nApparently-To: a@example.com\r\n\r\n",
	}, {
		name: "null address and empty groups",
		doc:  `RFC 5322 group syntax; Return-Path: <> has no address`,
		in:   "Return-Path: <>\r\nTo: undisclosed-recipients:;\r\n\r\n",
		want: "Return-Path: <>\r\nTo: undisclosed-recipients:;\r\n\r\n",
	}, {
		name: "a folded header that is rewritten is refolded",
		doc:  `cleanup_message.c cleanup_fold_header: a rewritten address list is folded anew`,
		in:   "To: a@h.example.com,\r\n\tb@remote.example\r\n\r\n",
		want: "To: a@example.com,\tb@remote.example\r\n\r\n",
	}, {
		name: "a folded header that is not rewritten stays as it was",
		doc:  `cleanup_message.c: headers that did not change are written out as they came (cleanup_out_header)`,
		in:   "To: a@example.com,\r\n    b@remote.example\r\n\r\n",
		want: "To: a@example.com,\r\n    b@remote.example\r\n\r\n",
	}, {
		name: "quoted local parts",
		doc:  `RFC 5322 quoted-string local parts are parsed and quoted again where needed`,
		in:   "From: \"joe smith\"@h.example.com\r\n\r\n",
		want: "From: \"joe smith\"@example.com\r\n\r\n",
	}, {
		name: "LF line endings and no empty line",
		doc:  `mailtee: header bytes are copied as they are, line endings included`,
		in:   "X-A: 1\nFrom: a@h.example.com\nTo: b@h.example.com",
		want: "X-A: 1\nFrom: a@example.com\nTo: b@example.com",
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := hdrBase(t)
			if c.opts != nil {
				c.opts(t, &o)
			}
			got, err := New(o).Header(context.Background(), []byte(c.in))
			if err != nil {
				t.Fatalf("%s: %v", c.doc, err)
			}
			if string(got) != c.want {
				t.Errorf("%s\n got %q\nwant %q", c.doc, got, c.want)
			}
		})
	}
}

func TestHeaderFolding(t *testing.T) {
	var addrs []string
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"} {
		addrs = append(addrs, u+"@workstation.example.com")
	}
	in := "To: " + strings.Join(addrs, ", ") + "\r\nSubject: x\r\n\r\n"
	got, err := New(hdrBase(t)).Header(context.Background(), []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	field, rest, _ := strings.Cut(string(got), "\r\nSubject")
	if rest != ": x\r\n\r\n" {
		t.Fatalf("following header changed: %q", got)
	}
	lines := strings.Split(field, "\r\n")
	if len(lines) < 2 {
		t.Fatalf("not folded: %q", field)
	}
	for i, l := range lines {
		if len(l) > foldWidth {
			t.Errorf("line %d longer than %d: %q", i, foldWidth, l)
		}
		if i > 0 && l[0] != ' ' {
			t.Errorf("continuation line %d does not start with a blank: %q", i, l)
		}
	}
	// Unfolding gives the rewritten value back, whitespace included.
	want := "To: " + strings.ReplaceAll(strings.Join(addrs, ", "), "workstation.", "")
	if u := strings.ReplaceAll(field, "\r\n", ""); u != want {
		t.Errorf("unfolded:\n got %q\nwant %q", u, want)
	}
	// Without a blank after the comma, one is added at the fold.
	in = "Cc: " + strings.Join(addrs, ",") + "\r\n\r\n"
	got, _ = New(hdrBase(t)).Header(context.Background(), []byte(in))
	for _, l := range strings.Split(string(got), "\r\n") {
		if len(l) > foldWidth {
			t.Errorf("line longer than %d: %q", foldWidth, l)
		}
	}
}

func TestHeaderUnchangedIsSame(t *testing.T) {
	in := []byte("From: a@remote.example\r\nTo: b@remote.example\r\n\r\n")
	got, err := New(hdrBase(t)).Header(context.Background(), in)
	if err != nil || &got[0] != &in[0] {
		t.Errorf("unchanged header: got a copy or an error (%v)", err)
	}
	// Nothing to do at all: not even parsed.
	got, _ = New(Options{}).Header(context.Background(), in)
	if &got[0] != &in[0] {
		t.Error("no rewriting configured: got a copy")
	}
}

func TestHeaderLookupError(t *testing.T) {
	o := base()
	o.Canonical = failTable{}
	_, err := New(o).Header(context.Background(), []byte("From: a@example.com\r\n\r\n"))
	if err == nil {
		t.Error("lookup failure: no error")
	}
}

// FuzzHeader: arbitrary header bytes never panic, and the end of the
// header section and everything after it survive as they were.
func FuzzHeader(f *testing.F) {
	f.Add([]byte("From: \"Joe\" <joe@host.example.com>\r\nTo: a@b.example.com, g: c;\r\n\r\n"))
	// Rules whose results no rule matches again, so that a second pass
	// must change nothing.
	o := base()
	o.Canonical = inline(f, "joe@host.example.com", "Joe.Bloggs@example.com")
	o.MasqueradeDomains = []string{"!keep.example.com", "example.com"}
	r := New(o)
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := r.Header(context.Background(), in)
		if err != nil {
			t.Fatalf("error without a failing table: %v", err)
		}
		if bytes.HasSuffix(in, []byte("\r\n\r\n")) && !bytes.HasSuffix(out, []byte("\r\n\r\n")) {
			t.Fatalf("lost the end of the header: %q -> %q", in, out)
		}
		if i := endOfHeader(in); i >= 0 {
			j := endOfHeader(out)
			if j < 0 || !bytes.Equal(in[i:], out[j:]) {
				t.Fatalf("changed the empty line or what follows: %q -> %q", in, out)
			}
		}
		// The rules are idempotent: a second pass changes nothing.
		again, _ := r.Header(context.Background(), out)
		if !bytes.Equal(again, out) {
			t.Fatalf("second pass changed the header:\n%q\n%q\n%q", in, out, again)
		}
	})
}

// endOfHeader returns the offset of the empty line that ends the header
// section, or -1.
func endOfHeader(b []byte) int {
	for pos := 0; pos < len(b); {
		end := lineEnd(b, pos)
		if l := string(b[pos:end]); l == "\r\n" || l == "\n" {
			return pos
		}
		pos = end
	}
	return -1
}

// header_address_token_limit, postconf(5): "The maximal number of address
// tokens are allowed in an address message header. Information that
// exceeds the limit is discarded." Postfix's tokenizer stops at the limit
// (tok822_scan_limit), so a header it rewrites is written from the tokens
// it read; one it leaves alone keeps everything.
func TestHeaderTokenLimit(t *testing.T) {
	ctx := context.Background()
	o := base()
	o.HeaderTokenLimit = 10
	r := New(o)
	// a , b , c , d , e , is 10 tokens: f is past the limit.
	got, err := r.Header(ctx, []byte("To: a, b, c, d, e, f\r\n"))
	if want := "To: a@example.com, b@example.com, c@example.com, d@example.com, e@example.com,\r\n"; err != nil || string(got) != want {
		t.Errorf("got %q (%v), want %q", got, err, want)
	}
	// The address the limit cuts in two (d @ remote . example is 5
	// tokens) is not parsed; what of it was read stays, as Postfix
	// writes the tokens it read.
	got, _ = r.Header(ctx, []byte("To: a, b, c, d@remote.example, e@x\r\n"))
	if want := "To: a@example.com, b@example.com, c@example.com, d@remote.\r\n"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// Nothing to rewrite in what was read: the header stays whole.
	in := []byte("To: a@remote.example, b@remote.example, c@remote.example, d\r\n")
	if got, _ := r.Header(ctx, in); !bytes.Equal(got, in) {
		t.Errorf("unchanged header: got %q", got)
	}

	// The default, 10240, on a list of 6000 names: 5120 of them are read.
	var b strings.Builder
	b.WriteString("Cc: ")
	for i := 1; i <= 6000; i++ {
		fmt.Fprintf(&b, "u%d, ", i)
	}
	got, _ = New(base()).Header(ctx, []byte(b.String()+"\r\n"))
	if n := bytes.Count(got, []byte("@example.com")); n != 5120 || !bytes.Contains(got, []byte(" u5120@example.com,")) || bytes.Contains(got, []byte("u5121")) {
		t.Errorf("default limit: %d addresses rewritten, want the first 5120 and nothing after", n)
	}
}

// lex counts tokens as tok822_scan_limit does: blanks are none, each of
// . % ! | inside an atom is one, and so is each run of text around them.
func TestLexTokenLimit(t *testing.T) {
	cases := []struct {
		in    string
		limit int
		cut   int
	}{
		{"a.b.c@x.y", 0, 9},
		{"a.b.c@x.y", 9, 9},
		{"a.b.c@x.y", 5, 5},              // a . b . c
		{"a.b.c@x.y", 4, 4},              // a . b .
		{"a.b.c@x.y", 1, 1},              // a
		{"u%v!w|x@y", 7, 7},              // u % v ! w | x
		{"  a ,  b", 2, 5},               // a , and not the blanks after
		{`"q q" (c c) [1.2] <x>`, 4, 19}, // a quoted string, comment or literal is one
		{"..", 1, 1},
	}
	for _, tc := range cases {
		_, cut, err := lex(tc.in, tc.limit)
		if err != nil || cut != tc.cut {
			t.Errorf("lex(%q, %d): cut %d (%v), want %d", tc.in, tc.limit, cut, err, tc.cut)
		}
	}
}
