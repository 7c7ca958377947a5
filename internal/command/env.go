package command

import (
	"fmt"
	"os"
	"strings"
)

// Attrs are what local(8) tells a command about the delivery through its
// environment (local(8), "EXTERNAL COMMAND DELIVERY"). An empty field is
// not exported, except User, Sender, Recipient and Local, which always
// are, as in command.c.
type Attrs struct {
	Home, Shell   string // the recipient user's home directory and login shell
	User          string // LOGNAME and USER: the bare recipient user name
	Sender        string // the envelope sender, "" for <>
	Recipient     string // the entire envelope recipient address
	OrigRecipient string // ORIGINAL_RECIPIENT: before rewriting and aliasing
	Local         string // the recipient's local part (left of the rightmost @)
	Extension     string // the recipient's address extension
	Domain        string // the recipient's domain
	EnvID         string // ENVID: the RFC 3461 envelope ID

	ClientName, ClientAddr, ClientHelo, ClientProtocol string // CLIENT_*
	SASLMethod, SASLSender, SASLUsername               string // SASL_*
}

// Env is a command's whole environment as pipe_command() builds it in
// Postfix: first the variables export_environment names, from mailtee's
// own environment (a NAME=value element sets the value; clean_env()),
// then PATH=DefaultPath, then a's variables, each value with every
// character that is not in filter (command_expansion_filter) replaced by
// '_'. A variable set twice keeps its first place, as setenv(3) does, so
// that `env` prints the same list as under Postfix.
func Env(a Attrs, export []string, filter string) []string {
	var e environ
	for _, x := range export {
		if strings.Contains(x, "=") {
			if k, v, ok := splitNameval(x); ok {
				e.set(k, v)
			}
		} else if v, ok := os.LookupEnv(x); ok {
			e.set(x, v)
		}
	}
	e.set("PATH", DefaultPath)
	add := func(k, v string) { e.set(k, Filter(v, filter)) }
	opt := func(k, v string) {
		if v != "" {
			add(k, v)
		}
	}
	opt("HOME", a.Home)
	add("LOGNAME", a.User)
	add("USER", a.User)
	add("SENDER", a.Sender)
	add("RECIPIENT", a.Recipient)
	add("LOCAL", a.Local)
	opt("SHELL", a.Shell)
	opt("DOMAIN", a.Domain)
	opt("EXTENSION", a.Extension)
	opt("ORIGINAL_RECIPIENT", a.OrigRecipient)
	opt("ENVID", a.EnvID)
	opt("CLIENT_HOSTNAME", a.ClientName)
	opt("CLIENT_ADDRESS", a.ClientAddr)
	opt("CLIENT_HELO", a.ClientHelo)
	opt("CLIENT_PROTOCOL", a.ClientProtocol)
	opt("SASL_METHOD", a.SASLMethod)
	opt("SASL_SENDER", a.SASLSender)
	opt("SASL_USERNAME", a.SASLUsername)
	return e.list
}

// environ is an environment in setenv(3) order.
type environ struct{ list []string }

func (e *environ) set(k, v string) {
	for i, kv := range e.list {
		if strings.HasPrefix(kv, k+"=") {
			e.list[i] = k + "=" + v
			return
		}
	}
	e.list = append(e.list, k+"="+v)
}

// splitNameval is src/util/split_nameval.c: "name = value" with blanks
// around both trimmed; ok is false without a name (clean_env() is then
// fatal, so such an element is left out).
func splitNameval(s string) (name, value string, ok bool) {
	k, v, _ := strings.Cut(s, "=")
	k = strings.Trim(k, cSpace)
	if k == "" || strings.ContainsAny(k, cSpace) {
		return "", "", false
	}
	return k, strings.Trim(v, cSpace), true
}

const cSpace = " \t\n\v\f\r"

// Filter replaces each byte of s that is not in allowed by '_', as
// local(8) censors what an outside sender controls before it reaches a
// command (command_expansion_filter) or a directory name
// (execution_directory_expansion_filter). Bytes, not characters: each
// byte of a UTF-8 character outside ASCII becomes '_' unless allowed
// lists it. A NUL is never allowed (Postfix's strings cannot hold one).
func Filter(s, allowed string) string {
	var ok [256]bool
	for i := 0; i < len(allowed); i++ {
		ok[allowed[i]] = true
	}
	ok[0] = false
	var b []byte
	for i := 0; i < len(s); i++ {
		if !ok[s[i]] {
			if b == nil {
				b = []byte(s)
			}
			b[i] = '_'
		}
	}
	if b == nil {
		return s
	}
	return string(b)
}

// CleanEnv reduces this process's environment to the variables preserve
// names, and sets its NAME=value elements, as Postfix's master(8) does
// with import_environment when it starts (src/util/clean_env.c): every
// Postfix process, and so every command, inherits the result, and
// export_environment picks from it (its default LANG comes from
// import_environment's LANG=C). An element without a name is an error,
// and nothing is changed.
func CleanEnv(preserve []string) error {
	var keep environ
	for _, x := range preserve {
		if strings.Contains(x, "=") {
			k, v, ok := splitNameval(x)
			if !ok {
				return fmt.Errorf("import_environment: missing attribute name in %q", x)
			}
			keep.set(k, v)
		} else if v, ok := os.LookupEnv(x); ok {
			keep.set(x, v)
		}
	}
	os.Clearenv()
	for _, kv := range keep.list {
		k, v, _ := strings.Cut(kv, "=")
		if err := os.Setenv(k, v); err != nil {
			return fmt.Errorf("import_environment: %s: %w", k, err)
		}
	}
	return nil
}
