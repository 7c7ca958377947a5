package rewrite

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maps"
)

// inline builds an inline: table from key, value pairs; a value may hold
// several addresses.
func inline(t testing.TB, kv ...string) maps.Table {
	t.Helper()
	var b strings.Builder
	b.WriteString("inline:{")
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " {%s = %s},", kv[i], kv[i+1])
	}
	b.WriteString(" }")
	tb, _, err := maps.Open(b.String())
	if err != nil {
		t.Fatalf("%s: %v", b.String(), err)
	}
	return tb
}

// base are the settings of a host example.com with recipient_delimiter +.
func base() Options {
	return Options{
		Myorigin:  "example.com",
		Delimiter: "+",
		IsLocal:   func(d string) bool { return d == "example.com" || d == "mail.example.com" },
	}
}

// show renders recipients compactly: "addr <- orig", "+copy" for copies.
func show(rs []envelope.Rcpt) []string {
	out := []string{}
	for _, r := range rs {
		s := r.Addr + " <- " + r.Orig
		if r.Copy {
			s += " +copy"
		}
		out = append(out, s)
	}
	return out
}

func rcpts(addrs ...string) []envelope.Rcpt {
	var out []envelope.Rcpt
	for _, a := range addrs {
		out = append(out, envelope.Rcpt{Addr: a, Orig: a})
	}
	return out
}

type envCase struct {
	name string
	doc  string // the Postfix documentation or source the case follows
	opts func(t *testing.T, o *Options)
	env  envelope.Envelope
	from string   // expected sender
	want []string // expected recipients, as show renders them
}

func runEnv(t *testing.T, cases []envCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := base()
			if c.opts != nil {
				c.opts(t, &o)
			}
			in := c.env
			in.Rcpts = append([]envelope.Rcpt(nil), c.env.Rcpts...)
			got, err := New(o).Envelope(context.Background(), &in)
			if err != nil {
				t.Fatalf("%s\nerror: %v", c.doc, err)
			}
			if got.From != c.from {
				t.Errorf("%s\nsender: got %q, want %q", c.doc, got.From, c.from)
			}
			if g := show(got.Rcpts); !reflect.DeepEqual(g, c.want) {
				t.Errorf("%s\nrecipients:\n got %q\nwant %q", c.doc, g, c.want)
			}
			if !reflect.DeepEqual(in.Rcpts, c.env.Rcpts) {
				t.Errorf("input envelope was modified: %v", in.Rcpts)
			}
		})
	}
}

func TestCanonical(t *testing.T) {
	runEnv(t, []envCase{{
		name: "user@domain",
		doc:  `canonical(5): "user@domain address: Replace user@domain by address. This form has the highest precedence."`,
		opts: func(t *testing.T, o *Options) {
			o.Canonical = inline(t, "joe@example.com", "Joe.Bloggs@example.net", "joe", "wrong@example.net", "@example.com", "wrong2@example.net")
		},
		env:  envelope.Envelope{From: "joe@example.com", Rcpts: rcpts("joe@example.com")},
		from: "Joe.Bloggs@example.net",
		want: []string{"Joe.Bloggs@example.net <- joe@example.com"},
	}, {
		name: "user only for local domains",
		doc:  `canonical(5): "user address: Replace user@site by address when site is equal to $myorigin, when site is listed in $mydestination, or when it is listed in $inet_interfaces or $proxy_interfaces."`,
		opts: func(t *testing.T, o *Options) { o.Canonical = inline(t, "wietse", "Wietse.Venema") },
		env:  envelope.Envelope{From: "wietse@mail.example.com", Rcpts: rcpts("wietse@example.com", "wietse@remote.example")},
		from: "Wietse.Venema@example.com",
		want: []string{"Wietse.Venema@example.com <- wietse@example.com", "wietse@remote.example <- wietse@remote.example"},
	}, {
		name: "@domain is the last resort; @otherdomain keeps the user",
		doc:  `canonical(5): "@domain address: Replace other addresses in domain by address. This form has the lowest precedence." and "When the result has the form @otherdomain, the result becomes the same user in otherdomain."`,
		opts: func(t *testing.T, o *Options) {
			o.Canonical = inline(t, "@old.example", "@new.example", "keep@old.example", "keep@old.example")
		},
		env:  envelope.Envelope{From: "a@old.example", Rcpts: rcpts("b@old.example", "keep@old.example")},
		from: "a@new.example",
		want: []string{"b@new.example <- b@old.example", "keep@old.example <- keep@old.example"},
	}, {
		name: "append_at_myorigin on the input and the result",
		doc:  `canonical(5) RESULT ADDRESS REWRITING: "When append_at_myorigin=yes, append "@$myorigin" to addresses without "@domain"." (ADDRESS_REWRITING_README: Rewrite "user" to "user@$myorigin", before any table lookup)`,
		opts: func(t *testing.T, o *Options) { o.Canonical = inline(t, "root@example.com", "admin") },
		env:  envelope.Envelope{From: "root", Rcpts: rcpts("bob")},
		from: "admin@example.com",
		want: []string{"bob@example.com <- bob"},
	}, {
		name: "extension propagated",
		doc:  `canonical(5) ADDRESS EXTENSION: "the lookup order becomes: user+foo@domain, user@domain, user+foo, user, and @domain"; postconf(5) propagate_unmatched_extensions (default: canonical, virtual)`,
		opts: func(t *testing.T, o *Options) {
			o.Canonical = inline(t, "joe@example.com", "joe.user@example.net", "ann+x@example.com", "ann.x@example.net")
		},
		env:  envelope.Envelope{From: "joe+Foo@example.com", Rcpts: rcpts("ann+x@example.com", "ann+y@example.com")},
		from: "joe.user+Foo@example.net",
		want: []string{"ann.x@example.net <- ann+x@example.com", "ann+y@example.com <- ann+y@example.com"},
	}, {
		name: "extension not propagated",
		doc:  `postconf(5) propagate_unmatched_extensions: "What address lookup tables copy an address extension from the lookup key to the lookup result." (here: virtual only)`,
		opts: func(t *testing.T, o *Options) {
			o.Canonical = inline(t, "joe@example.com", "joe.user@example.net")
			o.PropagateUnmatchedExtensions = []string{"virtual"}
		},
		env:  envelope.Envelope{From: "joe+foo@example.com", Rcpts: rcpts("joe+foo@example.com")},
		from: "joe.user@example.net",
		want: []string{"joe.user@example.net <- joe+foo@example.com"},
	}, {
		name: "recursive",
		doc:  `canonical(5): "The address mapping is recursive." (cleanup_map11.c: repeat until the address maps to itself or is not found)`,
		opts: func(t *testing.T, o *Options) {
			o.Canonical = inline(t, "a@example.com", "b@example.com", "b@example.com", "c@example.com", "c@example.com", "c@example.com")
		},
		env:  envelope.Envelope{From: "a@example.com", Rcpts: rcpts("a@example.com")},
		from: "c@example.com",
		want: []string{"c@example.com <- a@example.com"},
	}, {
		name: "sender and recipient maps before canonical_maps",
		doc:  `ADDRESS_REWRITING_README: "The sender and recipient canonical maps are applied before the common canonical maps."`,
		opts: func(t *testing.T, o *Options) {
			o.SenderCanonical = inline(t, "s@example.com", "s2@example.com")
			o.RecipientCanonical = inline(t, "r@example.com", "r2@example.com")
			o.Canonical = inline(t, "s2@example.com", "S3@example.com", "r2@example.com", "R3@example.com", "s@example.com", "wrong@example.com")
		},
		env:  envelope.Envelope{From: "s@example.com", Rcpts: rcpts("r@example.com", "s@example.com")},
		from: "S3@example.com",
		want: []string{"R3@example.com <- r@example.com", "wrong@example.com <- s@example.com"},
	}, {
		name: "canonical_classes",
		doc:  `postconf(5) canonical_classes: "What addresses are subject to canonical_maps address mapping." (here: envelope_recipient only)`,
		opts: func(t *testing.T, o *Options) {
			o.Canonical = inline(t, "a@example.com", "b@example.com")
			o.CanonicalClasses = []string{EnvelopeRecipient}
		},
		env:  envelope.Envelope{From: "a@example.com", Rcpts: rcpts("a@example.com")},
		from: "a@example.com",
		want: []string{"b@example.com <- a@example.com"},
	}, {
		name: "sender_canonical_classes and recipient_canonical_classes",
		doc:  `postconf(5) sender_canonical_classes / recipient_canonical_classes: "What addresses are subject to sender_canonical_maps [recipient_canonical_maps] address mapping." (here: header classes only)`,
		opts: func(t *testing.T, o *Options) {
			o.SenderCanonical = inline(t, "a@example.com", "b@example.com")
			o.RecipientCanonical = inline(t, "a@example.com", "b@example.com")
			o.SenderCanonicalClasses = []string{HeaderSender}
			o.RecipientCanonicalClasses = []string{HeaderRecipient}
		},
		env:  envelope.Envelope{From: "a@example.com", Rcpts: rcpts("a@example.com")},
		from: "a@example.com",
		want: []string{"a@example.com <- a@example.com"},
	}, {
		name: "null sender untouched",
		doc:  `cleanup_addr.c: sender_bcc_maps and rewriting need a non-empty address ("*STR(clean_addr)")`,
		opts: func(t *testing.T, o *Options) {
			o.Canonical = inline(t, "@example.com", "@other.example")
			o.SenderBCC = inline(t, "@example.com", "archive@example.com")
		},
		env:  envelope.Envelope{From: "", Rcpts: rcpts("a@remote.example")},
		from: "",
		want: []string{"a@remote.example <- a@remote.example"},
	}, {
		name: "MAILER-DAEMON@myorigin becomes the null sender",
		doc:  `cleanup_addr.c cleanup_addr_sender, 20000520: "Replace mailer-daemon@$myorigin by the null address, to handle bounced mail traffic more robustly."`,
		env:  envelope.Envelope{From: "mailer-daemon@EXAMPLE.com", Rcpts: rcpts("a@remote.example")},
		from: "",
		want: []string{"a@remote.example <- a@remote.example"},
	}})
}

func TestCanonicalLoopWarns(t *testing.T) {
	// cleanup_map11.c: MAX_RECURSION (10) lookups, then "unreasonable
	// ... map nesting" is logged and the last result is kept; the message
	// is still accepted.
	o := base()
	o.Canonical = inline(t, "a@example.com", "b@example.com", "b@example.com", "a@example.com")
	var warned []string
	o.Warnf = func(f string, args ...any) { warned = append(warned, fmt.Sprintf(f, args...)) }
	env, err := New(o).Envelope(context.Background(), &envelope.Envelope{From: "a@example.com"})
	if err != nil || env.From != "a@example.com" {
		t.Fatalf("got %q, %v; want a@example.com after 10 steps", env.From, err)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "unreasonable canonical_maps map nesting") {
		t.Errorf("warnings: %q", warned)
	}
	// "multi-valued %s entry": only the first address of a canonical
	// result is used.
	o.Canonical = inline(t, "a@example.com", "b@example.com, c@example.com")
	warned = nil
	env, _ = New(o).Envelope(context.Background(), &envelope.Envelope{From: "a@example.com"})
	if env.From != "b@example.com" || len(warned) != 1 || !strings.Contains(warned[0], "multi-valued") {
		t.Errorf("multi-valued canonical: got %q, warnings %q", env.From, warned)
	}
}

func TestMasquerade(t *testing.T) {
	masq := func(domains []string, classes []string, exceptions ...string) func(*testing.T, *Options) {
		return func(_ *testing.T, o *Options) {
			o.MasqueradeDomains = domains
			o.MasqueradeClasses = classes
			o.MasqueradeExceptions = exceptions
		}
	}
	allClasses := []string{EnvelopeSender, EnvelopeRecipient, HeaderSender, HeaderRecipient}
	runEnv(t, []envCase{{
		name: "first match, left to right",
		doc:  `postconf(5) masquerade_domains: "The list is processed left to right, and processing stops at the first match. Thus, masquerade_domains = foo.example.com example.com strips "user@any.thing.foo.example.com" to "user@foo.example.com", but strips "user@any.thing.else.example.com" to "user@example.com"."`,
		opts: masq([]string{"foo.example.com", "example.com"}, nil),
		env:  envelope.Envelope{From: "user@any.thing.foo.example.com"},
		from: "user@foo.example.com",
		want: []string{},
	}, {
		name: "first match, the other branch",
		doc:  `postconf(5) masquerade_domains: "... but strips "user@any.thing.else.example.com" to "user@example.com"."`,
		opts: masq([]string{"foo.example.com", "example.com"}, nil),
		env:  envelope.Envelope{From: "user@any.thing.else.example.com"},
		from: "user@example.com",
		want: []string{},
	}, {
		name: "order matters: a parent listed first wins",
		doc:  `cleanup_masquerade.c: "If any parent domain matches the list of masquerade domains, replace the domain in the address and terminate. ... Order of specification matters."`,
		opts: masq([]string{"example.com", "foo.example.com"}, nil),
		env:  envelope.Envelope{From: "user@any.thing.foo.example.com"},
		from: "user@example.com",
		want: []string{},
	}, {
		name: "! exception",
		doc:  `postconf(5) masquerade_domains: "masquerade_domains = !foo.example.com example.com does not change "user@any.thing.foo.example.com" or "user@foo.example.com", but strips "user@any.thing.else.example.com" to "user@example.com"."`,
		opts: masq([]string{"!foo.example.com", "example.com"}, allClasses),
		env:  envelope.Envelope{From: "user@any.thing.foo.example.com", Rcpts: rcpts("user@foo.example.com", "user@any.thing.else.example.com")},
		from: "user@any.thing.foo.example.com",
		want: []string{"user@foo.example.com <- user@foo.example.com", "user@example.com <- user@any.thing.else.example.com"},
	}, {
		name: "the domain itself is left alone; case folds",
		doc:  `cleanup_masq.ref: masq_list A.B.C,B.C address xxx@AA.A.B.C result xxx@a.b.c; masq_list a.b.c,b.c address xxx@a.b.c result xxx@a.b.c`,
		opts: masq([]string{"A.B.C", "b.c"}, allClasses),
		env:  envelope.Envelope{From: "xxx@AA.A.B.C", Rcpts: rcpts("xxx@a.b.c")},
		from: "xxx@a.b.c",
		want: []string{"xxx@a.b.c <- xxx@a.b.c"},
	}, {
		name: "masquerade_exceptions",
		doc:  `postconf(5) masquerade_exceptions: "Optional list of user names that are not subjected to address masquerading, even when their addresses match $masquerade_domains." Example: masquerade_exceptions = root, mailer-daemon`,
		opts: masq([]string{"example.com"}, allClasses, "root", "mailer-daemon"),
		env:  envelope.Envelope{From: "Root@host.example.com", Rcpts: rcpts("mailer-daemon@host.example.com", "bob@host.example.com")},
		from: "Root@host.example.com",
		want: []string{"mailer-daemon@host.example.com <- mailer-daemon@host.example.com", "bob@example.com <- bob@host.example.com"},
	}, {
		name: "envelope recipients are not masqueraded by default",
		doc:  `ADDRESS_REWRITING_README: "Subtle point: by default, address masquerading is applied only to message headers and to envelope sender addresses, but not to envelope recipients." (DESIGN.md, What the seed gets wrong (3))`,
		opts: masq([]string{"students.iiit.ac.in"}, nil),
		env:  envelope.Envelope{From: "a@relay.students.iiit.ac.in", Rcpts: rcpts("user1@relay.students.iiit.ac.in")},
		from: "a@students.iiit.ac.in",
		want: []string{"user1@relay.students.iiit.ac.in <- user1@relay.students.iiit.ac.in"},
	}, {
		name: "envelope_recipient class",
		doc:  `ADDRESS_REWRITING_README: "In order to subject envelope recipient addresses to masquerading, too, specify masquerade_classes = envelope_sender, envelope_recipient, header_sender, header_recipient"`,
		opts: masq([]string{"students.iiit.ac.in"}, allClasses),
		env:  envelope.Envelope{From: "a@relay.students.iiit.ac.in", Rcpts: rcpts("user1@relay.students.iiit.ac.in")},
		from: "a@students.iiit.ac.in",
		want: []string{"user1@students.iiit.ac.in <- user1@relay.students.iiit.ac.in"},
	}, {
		name: "no envelope_sender class",
		doc:  `postconf(5) masquerade_classes: "Specify zero or more of: envelope_sender, envelope_recipient, header_sender, header_recipient"`,
		opts: masq([]string{"example.com"}, []string{}),
		env:  envelope.Envelope{From: "a@host.example.com"},
		from: "a@host.example.com",
		want: []string{},
	}, {
		name: "masquerading after canonical mapping",
		doc:  `ADDRESS_REWRITING_README: address manipulations in cleanup are "Canonical address mapping, Address masquerading, ..." in that order (cleanup_addr_sender)`,
		opts: func(t *testing.T, o *Options) {
			o.Canonical = inline(t, "a@example.com", "b@host.example.com")
			o.MasqueradeDomains = []string{"example.com"}
		},
		env:  envelope.Envelope{From: "a@example.com"},
		from: "b@example.com",
		want: []string{},
	}})
}

func TestVirtual(t *testing.T) {
	virt := func(kv ...string) func(*testing.T, *Options) {
		return func(t *testing.T, o *Options) { o.VirtualAliases = inline(t, kv...) }
	}
	runEnv(t, []envCase{{
		name: "one to many",
		doc:  `virtual(5): "pattern address, address, ...: When pattern matches a mail address, replace it by the corresponding address."`,
		opts: virt("team@example.com", "ann@example.net, bob@example.net"),
		env:  envelope.Envelope{From: "x@remote.example", Rcpts: rcpts("team@example.com")},
		from: "x@remote.example",
		want: []string{"ann@example.net <- team@example.com", "bob@example.net <- team@example.com"},
	}, {
		name: "recursive, with the results in place",
		doc:  `virtual(5): "Virtual aliasing is recursive" (cleanup_map1n.c: the first result replaces the address, more are appended, and each is looked up again)`,
		opts: virt("all@example.com", "team@example.com, carl@example.net", "team@example.com", "ann@example.net, bob@example.net"),
		env:  envelope.Envelope{Rcpts: rcpts("all@example.com", "zed@example.net")},
		want: []string{"ann@example.net <- all@example.com", "carl@example.net <- all@example.com", "bob@example.net <- all@example.com", "zed@example.net <- zed@example.net"},
	}, {
		name: "an address that expands to itself is kept",
		doc:  `cleanup_map1n.c: "Allow an address to expand into itself once." / "Don't expand an address that already expanded into itself."`,
		opts: virt("ann@example.com", "ann@example.com, archive@example.net", "archive@example.net", "ANN@example.com"),
		env:  envelope.Envelope{Rcpts: rcpts("ann@example.com")},
		want: []string{"ann@example.com <- ann@example.com"},
	}, {
		name: "user and @domain forms",
		doc:  `virtual(5): "user address, address, ...: Redirect mail for user@site to address when site is equal to $myorigin, ..." and "@domain address, address, ...: Redirect mail for other users in domain to address."`,
		opts: virt("postmaster", "admin@example.net", "@virtual.example", "catchall@example.net"),
		env:  envelope.Envelope{Rcpts: rcpts("postmaster@example.com", "postmaster@virtual.example", "x@virtual.example")},
		want: []string{"admin@example.net <- postmaster@example.com", "catchall@example.net <- postmaster@virtual.example"},
	}, {
		name: "@otherdomain result",
		doc:  `virtual(5) RESULT ADDRESS REWRITING: "When the result has the form @otherdomain, the result becomes the same user in otherdomain. This works only for the first address in a multi-address lookup result."`,
		opts: virt("@old.example", "@new.example, archive@example.net"),
		env:  envelope.Envelope{Rcpts: rcpts("joe@old.example")},
		want: []string{"joe@new.example <- joe@old.example", "archive@example.net <- joe@old.example"},
	}, {
		name: "extension propagated to each result",
		doc:  `postconf(5) propagate_unmatched_extensions: "with a virtual(5) mapping of "joe@example.com => joe.user@example.net", the address "joe+foo@example.com" would rewrite to "joe.user+foo@example.net"."`,
		opts: virt("joe@example.com", "joe.user@example.net, joe@example.org"),
		env:  envelope.Envelope{Rcpts: rcpts("joe+foo@example.com")},
		want: []string{"joe.user+foo@example.net <- joe+foo@example.com", "joe+foo@example.org <- joe+foo@example.com"},
	}, {
		name: "results without a domain get @myorigin",
		doc:  `virtual(5) RESULT ADDRESS REWRITING: "When append_at_myorigin=yes, append "@$myorigin" to addresses without "@domain"."`,
		opts: virt("Wietse.Venema@example.com", "wietse"),
		env:  envelope.Envelope{Rcpts: rcpts("wietse.venema@example.com")},
		want: []string{"wietse@example.com <- wietse.venema@example.com"},
	}, {
		name: "virtual results are not canonicalized",
		doc:  `ADDRESS_REWRITING_README: "Addresses found in virtual alias maps are subjected to another iteration of virtual aliasing, but are not subjected to canonical mapping, in order to avoid loops."`,
		opts: func(t *testing.T, o *Options) {
			o.VirtualAliases = inline(t, "a@example.com", "b@example.com")
			o.Canonical = inline(t, "b@example.com", "c@example.com")
		},
		env:  envelope.Envelope{Rcpts: rcpts("a@example.com")},
		want: []string{"b@example.com <- a@example.com"},
	}, {
		name: "copies stay copies; Orig and NotifyOwner carry over",
		doc:  `mailtee: "Virtual alias results of a Copy recipient stay Copy"; Orig is the address the client gave (orig_to=)`,
		opts: virt("list@example.com", "ann@example.net, bob@example.net"),
		env: envelope.Envelope{Rcpts: []envelope.Rcpt{
			{Addr: "list@example.com", Copy: true, NotifyOwner: "owner-list@example.com"},
		}},
		want: []string{"ann@example.net <- list@example.com +copy", "bob@example.net <- list@example.com +copy"},
	}})
}

func TestVirtualLimits(t *testing.T) {
	ctx := context.Background()
	// virtual_alias_recursion_limit: a loop between two addresses is not
	// an address that expands to itself; cleanup(8) defers the message
	// with "4.6.0 Alias expansion error" (cleanup_map1n.c).
	o := base()
	o.VirtualAliases = inline(t, "a@example.com", "b@example.com", "b@example.com", "a@example.com")
	_, err := New(o).Envelope(ctx, &envelope.Envelope{Rcpts: rcpts("a@example.com")})
	var re *Error
	if !errors.As(err, &re) || re.Status != "4.6.0" || !strings.Contains(re.Msg, "nesting") || !re.Temporary() {
		t.Errorf("loop: got %v", err)
	}
	// virtual_alias_expansion_limit: "The maximal number of addresses that
	// virtual alias expansion produces from each original recipient."
	o.VirtualAliases = inline(t, "big@example.com", "a@x.example, b@x.example, c@x.example")
	o.VirtualExpansionLimit = 2
	_, err = New(o).Envelope(ctx, &envelope.Envelope{Rcpts: rcpts("big@example.com")})
	if !errors.As(err, &re) || re.Status != "4.6.0" || !strings.Contains(re.Msg, "expansion size") {
		t.Errorf("expansion limit: got %v", err)
	}
	o.VirtualExpansionLimit = 3
	env, err := New(o).Envelope(ctx, &envelope.Envelope{Rcpts: rcpts("big@example.com")})
	if err != nil || len(env.Rcpts) != 3 {
		t.Errorf("at the expansion limit: got %v, %v", env, err)
	}
	// virtual_alias_recursion_limit: "The maximal nesting depth of virtual
	// alias expansion." cleanup_map1n.c counts lookups, the last one (that
	// finds nothing) included: a -> b -> c -> d takes 4.
	o.VirtualAliases = inline(t, "a@example.com", "b@example.com", "b@example.com", "c@example.com", "c@example.com", "d@example.com")
	o.VirtualRecursionLimit = 3
	if _, err = New(o).Envelope(ctx, &envelope.Envelope{Rcpts: rcpts("a@example.com")}); !errors.As(err, &re) {
		t.Errorf("recursion limit 3, depth 3: got %v", err)
	}
	o.VirtualRecursionLimit = 4
	if env, err = New(o).Envelope(ctx, &envelope.Envelope{Rcpts: rcpts("a@example.com")}); err != nil || env.Rcpts[0].Addr != "d@example.com" {
		t.Errorf("recursion limit 4, depth 3: got %v, %v", env, err)
	}
}

func TestBCC(t *testing.T) {
	runEnv(t, []envCase{{
		name: "recipient_bcc_maps after canonical, before virtual",
		doc:  `ADDRESS_REWRITING_README: "After applying the canonical and masquerade mappings, the cleanup(8) daemon can generate optional BCC (blind carbon-copy) recipients." cleanup_addr.c cleanup_addr_recipient looks up recipient_bcc_maps with the canonicalized address; virtual aliasing happens in cleanup_out_recipient`,
		opts: func(t *testing.T, o *Options) {
			o.RecipientCanonical = inline(t, "old@example.com", "new@example.com")
			o.VirtualAliases = inline(t, "new@example.com", "mbox@example.net")
			o.RecipientBCC = inline(t, "new@example.com", "copy-of-new@archive.example", "mbox@example.net", "wrong@archive.example", "old@example.com", "wrong2@archive.example")
		},
		env:  envelope.Envelope{From: "s@remote.example", Rcpts: rcpts("old@example.com")},
		from: "s@remote.example",
		want: []string{"mbox@example.net <- old@example.com", "copy-of-new@archive.example <- new@example.com +copy"},
	}, {
		name: "the seed's dual delivery copy",
		doc:  `postconf(5) recipient_bcc_maps: "Look up the "user" address local part when the recipient domain equals $myorigin, $mydestination, $inet_interfaces or $proxy_interfaces." (seed: user1: user1@relay.students.iiit.ac.in)`,
		opts: func(t *testing.T, o *Options) {
			o.Myorigin = "students.iiit.ac.in"
			o.IsLocal = func(d string) bool { return d == "students.iiit.ac.in" }
			o.RecipientBCC = inline(t, "user1", "user1@relay.students.iiit.ac.in")
		},
		env:  envelope.Envelope{From: "x@gmail.example", Rcpts: rcpts("user1@students.iiit.ac.in", "user1@elsewhere.example")},
		from: "x@gmail.example",
		want: []string{"user1@students.iiit.ac.in <- user1@students.iiit.ac.in", "user1@elsewhere.example <- user1@elsewhere.example", "user1@relay.students.iiit.ac.in <- user1@students.iiit.ac.in +copy"},
	}, {
		name: "search order: full, without extension, user, @domain; no extension propagation",
		doc:  `postconf(5) recipient_bcc_maps: "The table search order is as follows: Look up the "user+extension@domain.tld" address ... "user@domain.tld" ... "user+extension" ... "user" ... "@domain.tld""; cleanup_addr.c passes IGNORE_EXTENSION`,
		opts: func(t *testing.T, o *Options) {
			o.RecipientBCC = inline(t, "a+x@example.com", "c1@archive.example", "b@example.com", "c2@archive.example", "c+y", "c3@archive.example", "@other.example", "c4@archive.example")
		},
		env:  envelope.Envelope{Rcpts: rcpts("a+x@example.com", "b+z@example.com", "c+y@example.com", "d@other.example")},
		want: []string{"a+x@example.com <- a+x@example.com", "b+z@example.com <- b+z@example.com", "c+y@example.com <- c+y@example.com", "d@other.example <- d@other.example", "c1@archive.example <- a+x@example.com +copy", "c2@archive.example <- b+z@example.com +copy", "c3@archive.example <- c+y@example.com +copy", "c4@archive.example <- d@other.example +copy"},
	}, {
		name: "several addresses in one result (mailtee)",
		doc:  `mailtee, beyond postconf(5) "(multiple results are not supported)": a BCC result may hold several addresses separated by commas and/or whitespace, each gets its own copy`,
		opts: func(t *testing.T, o *Options) {
			o.RecipientBCC = inline(t, "ann@example.com", "ann@relay.example, ann@google.example ann@m365.example")
		},
		env:  envelope.Envelope{Rcpts: rcpts("ann@example.com")},
		want: []string{"ann@example.com <- ann@example.com", "ann@relay.example <- ann@example.com +copy", "ann@google.example <- ann@example.com +copy", "ann@m365.example <- ann@example.com +copy"},
	}, {
		name: "a BCC address is rewritten like a recipient",
		doc:  `cleanup_addr.c cleanup_addr_bcc_dsn: "BCC addresses are supplied locally, and must be rewritten in the local address rewriting context." then recipient canonical maps, masquerading and (cleanup_out_recipient) virtual aliasing`,
		opts: func(t *testing.T, o *Options) {
			o.RecipientBCC = inline(t, "ann@example.com", "archive")
			o.RecipientCanonical = inline(t, "archive@example.com", "archive@store.example")
			o.VirtualAliases = inline(t, "archive@store.example", "a1@store.example, a2@store.example")
		},
		env:  envelope.Envelope{Rcpts: rcpts("ann@example.com")},
		want: []string{"ann@example.com <- ann@example.com", "a1@store.example <- ann@example.com +copy", "a2@store.example <- ann@example.com +copy"},
	}, {
		name: "sender_bcc_maps with the rewritten sender",
		doc:  `postconf(5) sender_bcc_maps: "Optional BCC (blind carbon-copy) address lookup tables, indexed by sender address." (cleanup_addr_sender: after sender canonical mapping and masquerading)`,
		opts: func(t *testing.T, o *Options) {
			o.MasqueradeDomains = []string{"example.com"}
			o.SenderBCC = inline(t, "boss@example.com", "boss-sent@archive.example", "boss@host.example.com", "wrong@archive.example")
		},
		env:  envelope.Envelope{From: "boss@host.example.com", Rcpts: rcpts("x@remote.example")},
		from: "boss@example.com",
		want: []string{"x@remote.example <- x@remote.example", "boss-sent@archive.example <- boss@example.com +copy"},
	}, {
		name: "always_bcc",
		doc:  `postconf(5) always_bcc: "Optional address that receives a "blind carbon copy" of each message that is received by the Postfix mail system."`,
		opts: func(t *testing.T, o *Options) { o.AlwaysBCC = "journal@archive.example" },
		env:  envelope.Envelope{From: "s@remote.example", Rcpts: rcpts("a@example.com", "b@example.com")},
		from: "s@remote.example",
		want: []string{"a@example.com <- a@example.com", "b@example.com <- b@example.com", "journal@archive.example <- journal@archive.example +copy"},
	}, {
		name: "always_bcc needs a recipient",
		doc:  `cleanup_extracted.c: "On the way out, add the optional automatic BCC recipient." only when state->recip != 0`,
		opts: func(t *testing.T, o *Options) { o.AlwaysBCC = "journal@archive.example" },
		env:  envelope.Envelope{From: "s@remote.example"},
		from: "s@remote.example",
		want: []string{},
	}, {
		name: "order of copies: recipient, sender, always",
		doc:  `DESIGN.md Mail path 3: "BCC maps (recipient, sender, always)"`,
		opts: func(t *testing.T, o *Options) {
			o.RecipientBCC = inline(t, "r@example.com", "c-rcpt@archive.example")
			o.SenderBCC = inline(t, "s@example.com", "c-sender@archive.example")
			o.AlwaysBCC = "c-always@archive.example"
		},
		env:  envelope.Envelope{From: "s@example.com", Rcpts: rcpts("r@example.com")},
		from: "s@example.com",
		want: []string{"r@example.com <- r@example.com", "c-rcpt@archive.example <- r@example.com +copy", "c-sender@archive.example <- s@example.com +copy", "c-always@archive.example <- c-always@archive.example +copy"},
	}, {
		name: "no BCC for mail mailtee generates",
		doc:  `postconf(5) recipient_bcc_maps: "automatic BCC recipients are not generated after Postfix forwards mail internally, or after Postfix generates mail itself."`,
		opts: func(t *testing.T, o *Options) {
			o.RecipientBCC = inline(t, "@example.com", "c@archive.example")
			o.AlwaysBCC = "journal@archive.example"
		},
		env:  envelope.Envelope{Notification: true, Rcpts: rcpts("a@example.com")},
		want: []string{"a@example.com <- a@example.com"},
	}, {
		name: "no BCC of a copy",
		doc:  `cleanup_addr.c: BCC recipients (cleanup_addr_bcc_dsn) get no BCC lookups of their own; mailtee extends this to copies already in the envelope`,
		opts: func(t *testing.T, o *Options) { o.RecipientBCC = inline(t, "@example.com", "c@archive.example") },
		env:  envelope.Envelope{Rcpts: []envelope.Rcpt{{Addr: "a@example.com", Copy: true}}},
		want: []string{"a@example.com <- a@example.com +copy"},
	}})
}

func TestDedupe(t *testing.T) {
	runEnv(t, []envCase{{
		name: "case-insensitive, first kept",
		doc:  `cleanup_state.c: been_here_init(var_dup_filter_limit, BH_FLAG_FOLD) - duplicate recipients are eliminated, case folded`,
		env:  envelope.Envelope{Rcpts: rcpts("Ann@Example.com", "ann@example.com", "bob@example.com")},
		want: []string{"Ann@Example.com <- Ann@Example.com", "bob@example.com <- bob@example.com"},
	}, {
		name: "duplicates from virtual expansion",
		doc:  `cleanup_out_recipient.c: each address of the virtual expansion passes the duplicate filter`,
		opts: func(t *testing.T, o *Options) {
			o.VirtualAliases = inline(t, "team@example.com", "ann@example.com, bob@example.com")
		},
		env:  envelope.Envelope{Rcpts: rcpts("bob@example.com", "team@example.com")},
		want: []string{"bob@example.com <- bob@example.com", "ann@example.com <- team@example.com"},
	}, {
		name: "a copy that duplicates a real recipient is dropped",
		doc:  `mailtee: a copy never displaces a real recipient, whose failures go to the sender`,
		opts: func(t *testing.T, o *Options) {
			o.RecipientBCC = inline(t, "ann@example.com", "bob@example.com", "carl@example.com", "archive@example.com")
			o.SenderBCC = inline(t, "s@example.com", "archive@example.com")
		},
		env: envelope.Envelope{From: "s@example.com", Rcpts: []envelope.Rcpt{
			{Addr: "bob@example.com", Orig: "bob@example.com", Copy: true},
			{Addr: "ann@example.com", Orig: "ann@example.com"},
			{Addr: "BOB@example.com", Orig: "BOB@example.com"},
			{Addr: "carl@example.com", Orig: "carl@example.com"},
		}},
		from: "s@example.com",
		want: []string{"ann@example.com <- ann@example.com", "BOB@example.com <- BOB@example.com", "carl@example.com <- carl@example.com", "archive@example.com <- carl@example.com +copy"},
	}})
}

func TestOrigFilledIn(t *testing.T) {
	o := base()
	o.VirtualAliases = inline(t, "a@example.com", "b@example.com")
	env, err := New(o).Envelope(context.Background(), &envelope.Envelope{Rcpts: []envelope.Rcpt{{Addr: "a@example.com"}, {Addr: "c@example.com", Orig: "C@Example.com"}}})
	if err != nil {
		t.Fatal(err)
	}
	if g := show(env.Rcpts); !reflect.DeepEqual(g, []string{"b@example.com <- a@example.com", "c@example.com <- C@Example.com"}) {
		t.Errorf("got %q", g)
	}
}

// TestOrder runs every stage on one message, in Postfix's order:
// canonical, masquerade, BCC lookup, virtual, dedupe.
func TestOrder(t *testing.T) {
	o := base()
	o.Canonical = inline(t, "sales@example.com", "sales@shop.example.com", "joe", "joe@desk.example.com")
	o.MasqueradeDomains = []string{"example.com"}
	o.MasqueradeClasses = []string{EnvelopeSender, EnvelopeRecipient}
	// Looked up with the masqueraded address, not the original or the
	// virtual result.
	o.RecipientBCC = inline(t, "sales@example.com", "archive@example.net", "sales@shop.example.com", "wrong@example.net")
	o.VirtualAliases = inline(t, "sales@example.com", "ann@example.com, archive@example.net")
	o.SenderBCC = inline(t, "joe@example.com", "joe-sent@example.net")
	o.AlwaysBCC = "ann@example.com"
	env, err := New(o).Envelope(context.Background(), &envelope.Envelope{From: "joe", Rcpts: rcpts("sales@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	if env.From != "joe@example.com" {
		t.Errorf("sender: %q", env.From)
	}
	want := []string{
		"ann@example.com <- sales@example.com",
		"archive@example.net <- sales@example.com",
		"joe-sent@example.net <- joe@example.com +copy",
	}
	if g := show(env.Rcpts); !reflect.DeepEqual(g, want) {
		t.Errorf("got  %q\nwant %q", g, want)
	}
}

type failTable struct{}

var errDown = errors.New("table server down")

func (failTable) Lookup(context.Context, string) (string, bool, error) { return "", false, errDown }

func TestLookupErrors(t *testing.T) {
	// cleanup_addr.c: "%s map lookup problem -- message not accepted, try
	// again later".
	for name, set := range map[string]func(*Options){
		"canonical":  func(o *Options) { o.Canonical = failTable{} },
		"virtual":    func(o *Options) { o.VirtualAliases = failTable{} },
		"rcpt bcc":   func(o *Options) { o.RecipientBCC = failTable{} },
		"sender bcc": func(o *Options) { o.SenderBCC = failTable{} },
	} {
		o := base()
		set(&o)
		_, err := New(o).Envelope(context.Background(), &envelope.Envelope{From: "a@example.com", Rcpts: rcpts("b@example.com")})
		var re *Error
		if !errors.As(err, &re) || re.Status != "4.3.0" || !errors.Is(err, errDown) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	// mail_addr_map.c: a result that holds no address is a lookup error.
	o := base()
	o.VirtualAliases = inline(t, "a@example.com", `"unbalanced`)
	if _, err := New(o).Envelope(context.Background(), &envelope.Envelope{Rcpts: rcpts("a@example.com")}); err == nil {
		t.Error("non-address result: no error")
	}
}

func TestCheck(t *testing.T) {
	if p := (Options{}).Check(); p != nil {
		t.Errorf("zero Options: %v", p)
	}
	bad := Options{
		CanonicalClasses:             []string{"envelope_sendr"},
		SenderCanonicalClasses:       []string{EnvelopeRecipient},
		MasqueradeExceptions:         []string{"root", "hash:/etc/postfix/masq"},
		PropagateUnmatchedExtensions: []string{"virtual", "aliases"},
		AlwaysBCC:                    "journal@archive.example, <broken",
	}
	// The always_bcc: serve refused every message with it.
	if p := (Options{AlwaysBCC: "a b c @@"}).Check(); len(p) != 1 || p[0].Param != "always_bcc" {
		t.Errorf("always_bcc = a b c @@: got %v, want one always_bcc problem", p)
	}
	var all []string
	for _, p := range bad.Check() {
		all = append(all, p.Error())
	}
	got := strings.Join(all, "\n")
	for _, want := range []string{`canonical_classes: unknown or unsupported class "envelope_sendr"`, `sender_canonical_classes: unknown or unsupported class "envelope_recipient"`, `masquerade_exceptions: "hash:/etc/postfix/masq"`, `propagate_unmatched_extensions: unknown value "aliases"`, `always_bcc: non-address result`} {
		if !strings.Contains(got, want) {
			t.Errorf("Check: got %s, want %s", got, want)
		}
	}
}

// keyedTable is a fixed-key table with any keys.
type keyedTable map[string]string

func (k keyedTable) Lookup(_ context.Context, key string) (string, bool, error) {
	v, ok := k[key]
	return v, ok, nil
}
func (keyedTable) FixedKeys() {}

func TestQuotedLocalPart(t *testing.T) {
	// Envelope addresses are in external (quoted) form; tables are keyed
	// by the internal form (maps.LookupAddress) and results come back
	// quoted where needed.
	o := base()
	// A key with a blank cannot be written in an inline: table (Postfix's
	// split_qnameval() ends the key there), nor in a postmap file: it
	// comes from a database table, such as mysql:.
	o.VirtualAliases = keyedTable{"first last@example.com": `"first.last"@example.net`, "x@example.com": `"a b"@example.net`}
	env, err := New(o).Envelope(context.Background(), &envelope.Envelope{Rcpts: rcpts(`"first last"@example.com`, "x@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`first.last@example.net <- "first last"@example.com`, `"a b"@example.net <- x@example.com`}
	if g := show(env.Rcpts); !reflect.DeepEqual(g, want) {
		t.Errorf("got %q, want %q", g, want)
	}
}

func TestCrunch(t *testing.T) {
	// mail_addr_crunch.c: "Parse the string, rewrite each address to
	// canonical form" - a table result is an address list (virtual(5):
	// "address, address, ..."); mailtee also splits at whitespace, for
	// BCC results that name several copies.
	r := New(base())
	for _, c := range []struct {
		in   string
		want string // addresses joined by " | ", or "error"
	}{
		{"a@x.example, b@x.example", "a@x.example | b@x.example"},
		{"a@x.example b@x.example\tc", "a@x.example | b@x.example | c@example.com"},
		{`Archive <arch@x.example>, "q u"@x.example`, `arch@x.example | "q u"@x.example`},
		{"a@x.example (the archive) b@x.example,,", "a@x.example | b@x.example"},
		{"", "error"},
		{"<>", "error"},
		{`"unbalanced@x.example`, "error"},
		{"<a@x.example", "error"},
		{"a@x.example <b@x.example> <c@x.example>", "error"},
		{"a@@x.example", "error"},
	} {
		list, err := r.crunch(c.in)
		got := "error"
		if err == nil {
			var s []string
			for _, a := range list {
				s = append(s, a.String())
			}
			got = strings.Join(s, " | ")
		}
		if got != c.want {
			t.Errorf("crunch(%q) = %s (%v), want %s", c.in, got, err, c.want)
		}
	}
}

func TestOtherDomainExtension(t *testing.T) {
	// mail_addr_map.c: "Prepend the original user to @otherdomain, but do
	// not propagate the unmatched address extension" - the extension comes
	// back only with propagate_unmatched_extensions; an @domain key
	// matches the whole local part, extension included.
	o := base()
	o.VirtualAliases = inline(t, "joe@old.example", "@new.example", "@older.example", "@new.example")
	run := func() []string {
		env, err := New(o).Envelope(context.Background(), &envelope.Envelope{Rcpts: rcpts("joe+foo@old.example", "ann+bar@older.example")})
		if err != nil {
			t.Fatal(err)
		}
		return show(env.Rcpts)
	}
	if g, w := run(), []string{"joe+foo@new.example <- joe+foo@old.example", "ann+bar@new.example <- ann+bar@older.example"}; !reflect.DeepEqual(g, w) {
		t.Errorf("propagating: got %q, want %q", g, w)
	}
	o.PropagateUnmatchedExtensions = []string{"canonical"}
	if g, w := run(), []string{"joe@new.example <- joe+foo@old.example", "ann+bar@new.example <- ann+bar@older.example"}; !reflect.DeepEqual(g, w) {
		t.Errorf("not propagating: got %q, want %q", g, w)
	}
}
