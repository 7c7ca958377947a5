package config

import "testing"

// Issue 13, defect 6: a table is credited to the parameter whose value
// names it, with its line, and not to one that inherits it through a
// default ($virtual_alias_maps in virtual_alias_domains) or a $reference.
func TestTableRefsOrigin(t *testing.T) {
	c := parse(t, "myhostname = h.example.com\n"+
		"virtual_alias_maps = mysql:/etc/postfix/virtual.cf\n"+
		"my_maps = texthash:/etc/postfix/relay\n"+
		"relay_recipient_maps = ${my_maps}\n"+
		"alias_maps = hash:$config_directory/aliases\n"+
		"transport_maps = $my_maps, hash:/etc/postfix/transport\n")
	want := map[string]struct {
		param string
		line  int
	}{
		"mysql:/etc/postfix/virtual.cf": {"virtual_alias_maps", 2},
		"texthash:/etc/postfix/relay":   {"my_maps", 3},
		"hash:/cfg/aliases":             {"alias_maps", 5},
		"hash:/etc/postfix/transport":   {"transport_maps", 6},
	}
	seen := map[string]int{}
	for _, ref := range c.TableRefs() {
		w, ok := want[ref.Spec]
		if !ok {
			continue
		}
		seen[ref.Spec]++
		if ref.Param != w.param || ref.Line != w.line {
			t.Errorf("%s: credited to %s line %d, want %s line %d", ref.Spec, ref.Param, ref.Line, w.param, w.line)
		}
	}
	// virtual_alias_domains, local_recipient_maps and the two users of
	// $my_maps name them again.
	if seen["mysql:/etc/postfix/virtual.cf"] < 2 || seen["hash:/cfg/aliases"] < 2 || seen["texthash:/etc/postfix/relay"] < 2 {
		t.Errorf("inherited references missing: %v", seen)
	}
	// A default that names a table itself is the default's.
	c = parse(t, "myhostname = h.example.com\n")
	for _, ref := range c.TableRefs() {
		if ref.Spec == "hash:/etc/aliases" && ref.Param != "alias_maps" {
			t.Errorf("default alias table credited to %s", ref.Param)
		}
	}
}

func TestSoleReference(t *testing.T) {
	for in, want := range map[string]string{"$a_b": "a_b", "${x}": "x", "$(y)": "y", "${x?y}": "", "hash:$a": "", "$": "", "$a/b": ""} {
		if got := soleReference(in); got != want {
			t.Errorf("soleReference(%q) = %q, want %q", in, got, want)
		}
	}
}
