package maps

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/diag"
	"github.com/mailtee/mailtee/internal/users/userstest"
)

func lookup(t *testing.T, tb Table, key string) (string, bool) {
	t.Helper()
	v, ok, err := tb.Lookup(context.Background(), key)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", key, err)
	}
	return v, ok
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func findDiag(l diag.List, sub string) (diag.Diag, bool) {
	for _, d := range l {
		if strings.Contains(d.Msg, sub) {
			return d, true
		}
	}
	return diag.Diag{}, false
}

// Behaviour checked against Postfix 3.7's postmap on the same source:
// keys fold to lower case; the first of duplicate keys wins with a
// warning; a key without value is skipped with "expected format"; a
// "quoted key" keeps its quotes; the value keeps inner blanks.
func TestTextTable(t *testing.T) {
	src := "User1:  a@b\nuser1 dup\nkeyonly\n\"a b\" quoted\n  cont\nx\ty  z  \nuser2 first\nUSER2 second\n"
	tb, diags := parseText("t", []byte(src))
	for key, want := range map[string]string{
		"user1": "a@b", "USER1": "a@b", `"a b"`: "quoted  cont", "x": "y  z", "user2": "first",
	} {
		if v, ok := lookup(t, tb, key); !ok || v != want {
			t.Errorf("%q = %q, %v; want %q", key, v, ok, want)
		}
	}
	if _, ok := lookup(t, tb, "keyonly"); ok {
		t.Error("a key without value must be skipped")
	}
	for sub, line := range map[string]int{
		"ends in ':'":                           1,
		`duplicate entry: "user1"`:              2,
		"expected format: key whitespace value": 3,
		`duplicate entry: "user2"`:              8,
	} {
		if d, ok := findDiag(diags, sub); !ok || d.Line != line || d.Severity != diag.Warning {
			t.Errorf("want a warning %q at line %d, got %v", sub, line, diags)
		}
	}
}

// postalias(1) on Postfix 3.7: values are re-joined with ", "; a leading
// backslash is dropped; a quoted name loses its quotes. The seed's two
// deviations are accepted with warnings (DESIGN.md).
func TestAliasTable(t *testing.T) {
	src := "a: b,c ,  d\nlong: a,\n  b\nroot: \\root, |\"/bin/cmd\"\n\"q z\": w\n" +
		"user1@relay.example    user1@example\nc: x,,y\nempty:\n"
	tb, diags := parseAlias("al", []byte(src))
	for key, want := range map[string]string{
		"a": "b, c, d", "long": "a, b", "root": `root, |"/bin/cmd"`, "q z": "w",
		"user1@relay.example": "user1@example", "c": "x, , y",
	} {
		if v, ok := lookup(t, tb, key); !ok || v != want {
			t.Errorf("%q = %q, %v; want %q", key, v, ok, want)
		}
	}
	if d, ok := findDiag(diags, "no ':' after the name"); !ok || d.Line != 6 {
		t.Errorf("want a warning for the line without a colon, got %v", diags)
	}
	if d, ok := findDiag(diags, "is a full address"); !ok || d.Line != 6 {
		t.Errorf("want a warning for the address key, got %v", diags)
	}
	if d, ok := findDiag(diags, "command"); ok {
		t.Errorf("commands are delivered now, yet: %v", d)
	}
	if d, ok := findDiag(diags, "need name:value pair; line ignored"); !ok || d.Line != 8 {
		t.Errorf("want a warning for the empty value, got %v", diags)
	}
}

func TestSplitAliasValue(t *testing.T) {
	got := SplitAliasValue(`"a, b"@x,  c , :include:/f`)
	if strings.Join(got, "|") != `"a, b"@x|c|:include:/f` {
		t.Errorf("SplitAliasValue = %q", got)
	}
}

// inline_table(5) and the forms Postfix 3.7's postmap accepts.
func TestInlineAndStatic(t *testing.T) {
	tb, _, err := Open("inline:{ x=1, Z=q, { y = 2 3 } }")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"x": "1", "z": "q", "Z": "q", "y": "2 3"} {
		if v, ok := lookup(t, tb, key); !ok || v != want {
			t.Errorf("inline %q = %q, %v; want %q", key, v, ok, want)
		}
	}
	if _, _, err := Open("inline:{x=1, z = q}"); err == nil || !strings.Contains(err.Error(), "missing '='") {
		t.Errorf("\"z = q\" outside braces must fail as in Postfix, got %v", err)
	}
	st, _, err := Open("static:{a b}")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := lookup(t, st, "anything"); !ok || v != "a b" {
		t.Errorf("static = %q, %v", v, ok)
	}
}

func TestOpen(t *testing.T) {
	p := writeFile(t, "transport", "students.iiit.ac.in     smtp:aspmx.l.google.com\n")
	for _, typ := range []string{"hash", "btree", "lmdb", "texthash", "proxy:hash"} {
		tb, _, err := Open(typ + ":" + p)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		if v, ok := lookup(t, tb, "students.iiit.ac.in"); !ok || v != "smtp:aspmx.l.google.com" {
			t.Errorf("%s lookup = %q, %v", typ, v, ok)
		}
	}
	if _, _, err := Open("hash:" + p + ".db"); err != nil {
		t.Errorf("hash:file.db must read the source file: %v", err)
	}
	if _, _, err := Open("ldap:/etc/postfix/ldap.cf"); err == nil || !strings.Contains(err.Error(), "unsupported table type \"ldap\"") {
		t.Errorf("ldap must be an unsupported type, got %v", err)
	}
	if _, _, err := Open("hash:/nonexistent/file"); err == nil {
		t.Error("a missing file must be an error")
	}
	if _, _, err := Open("nocolon"); err == nil {
		t.Error("a spec without type must be an error")
	}
}

// unix:passwd.byname asks the name service, as getpwnam: a user that is
// only there (not in /etc/passwd) is found.
func TestUnixPasswd(t *testing.T) {
	tb, _, err := Open("proxy:unix:passwd.byname")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := lookup(t, tb, "root"); !ok || !strings.HasPrefix(v, "root:x:0:0::") {
		t.Errorf("root = %q, %v", v, ok)
	}
	if _, ok := lookup(t, tb, "ROOT"); ok {
		t.Error("login names are case-sensitive")
	}
	if _, ok := lookup(t, tb, "no-such-user-mailtee"); ok {
		t.Error("an unknown user was found")
	}
	name := fmt.Sprintf("mtmaps%d", time.Now().UnixNano()%1e9)
	userstest.AddNSSUser(t, name, 61260, 61260, "/home/"+name)
	if v, ok := lookup(t, tb, name); !ok || v != name+":x:61260:61260::/home/"+name+":/bin/sh" {
		t.Errorf("NSS-only user %s = %q, %v", name, v, ok)
	}
}

func FuzzTextTable(f *testing.F) {
	f.Add([]byte("user1:  user1@relay.students.iiit.ac.in\n\"a b\" c\n  d\n"))
	f.Add([]byte("\"unterminated x\n:\n \n#\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tb, _ := parseText("f", data)
		for _, e := range tb.Entries() {
			if v, ok, _ := tb.Lookup(context.Background(), e.Key); !ok || v != e.Value {
				t.Fatalf("entry %q does not look up to itself", e.Key)
			}
		}
	})
}

func FuzzAliasTable(f *testing.F) {
	f.Add([]byte("a: b, c\nroot: \\root, |\"/bin/cmd\"\n\"q z\": w\nuser@x y\n"))
	f.Add([]byte(":include:/x\n\": \"\n a\n\\"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tb, _ := parseAlias("f", data)
		for _, e := range tb.Entries() {
			SplitAliasValue(e.Value)
		}
	})
}

func FuzzInline(f *testing.F) {
	f.Add("inline:{ x=1, Z=q, { y = 2 3 } }")
	f.Add("inline:{{{}")
	f.Fuzz(func(t *testing.T, spec string) {
		if !strings.HasPrefix(spec, "inline:") {
			return
		}
		Open(spec)
	})
}
