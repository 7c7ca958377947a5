package pflog

import "strings"

// Fields reads the "name=value, name=value" list of a Postfix log text
// (qmgr's "from=<a@b>, size=312, nrcpt=1 (queue active)", a delivery
// agent's "to=<x>, orig_to=<y>, relay=..., status=sent (reply)").
//
// An address value is written in <>, and may hold ", " inside a quoted
// local part: it ends at the '>' that is followed by ", " or the end.
// "status=" ends the list: its value is the word after it, and the text
// in parentheses after that is the reply, returned apart (it holds
// anything, including "name=value"). Text that is not name=value
// ("(queue active)") stays part of the value before it.
func Fields(s string) (fields map[string]string, reply string) {
	fields = map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return fields, reply
		}
		name := s[:eq]
		if strings.ContainsAny(name, " ,<>()") {
			return fields, reply
		}
		s = s[eq+1:]
		if name == "status" {
			word, after, _ := strings.Cut(s, " ")
			fields[name] = strings.TrimSuffix(word, ",")
			after = strings.TrimSpace(after)
			if strings.HasPrefix(after, "(") {
				// The reply runs to the last ')': replies have their own.
				if j := strings.LastIndexByte(after, ')'); j > 0 {
					reply = after[1:j]
				} else {
					reply = after[1:]
				}
			} else if after != "" {
				// "status=expired, returned to sender"
				reply = strings.TrimPrefix(after, ", ")
			}
			return fields, reply
		}
		var val string
		if strings.HasPrefix(s, "<") {
			end := -1
			for i := 1; i < len(s); i++ {
				if s[i] == '>' && (i+1 == len(s) || strings.HasPrefix(s[i+1:], ", ") || s[i+1] == ' ') {
					end = i
					break
				}
			}
			if end < 0 {
				fields[name] = s
				return fields, reply
			}
			val, s = s[:end+1], s[end+1:]
			// Anything up to the separator belongs to no field
			// (" (queue active)" after a last address).
			if i := strings.Index(s, ", "); i >= 0 {
				s = s[i+2:]
			} else {
				s = ""
			}
		} else if i := strings.Index(s, ", "); i >= 0 {
			val, s = s[:i], s[i+2:]
		} else {
			val, s = s, ""
		}
		fields[name] = val
	}
	return fields, reply
}

// addr is an address field's value without its <>.
func addr(v string) string {
	if len(v) >= 2 && v[0] == '<' && v[len(v)-1] == '>' {
		return v[1 : len(v)-1]
	}
	return v
}

// firstWord is v up to its first blank ("1 (queue active)" is "1").
func firstWord(v string) string {
	w, _, _ := strings.Cut(v, " ")
	return w
}
