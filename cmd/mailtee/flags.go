package main

import (
	"flag"
	"strings"
)

// parseArgs parses a subcommand's arguments the way Postfix's commands
// read theirs with getopt(3) as glibc has it: options may come before,
// between or after the operands ("mailtee queue list -c DIR"), one-letter
// boolean options cluster ("-xh"), an option's value follows in the same
// argument ("-cDIR") or the next, a long option's value follows "=" or
// comes next ("--since T"), and "--" ends the options. Go's flag
// package alone stops at the first operand and would take every option
// after it for an operand. It returns the operands, in order.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, operands []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			operands = append(operands, args[i+1:]...)
			i = len(args)
		case len(a) < 2 || a[0] != '-':
			operands = append(operands, a) // "-" too: standard input
		case a[1] == '-' && !strings.Contains(a, "=") && i+1 < len(args) && takesValue(fs, a[2:]):
			// "--since T", as getopt_long reads it.
			flags = append(flags, a+"="+args[i+1])
			i++
		case a[1] == '-' || len(a) > 2 && a[2] == '=':
			flags = append(flags, a) // Go's own forms: --help, -c=DIR, --since=T
		default:
			// A cluster: booleans until a letter that takes a value,
			// which takes the rest of the argument or the next one.
			for j := 1; j < len(a); j++ {
				name := a[j : j+1]
				f := fs.Lookup(name)
				if f == nil || isBoolFlag(f) {
					flags = append(flags, "-"+name) // an unknown one fails below
					continue
				}
				v := a[j+1:]
				if v == "" {
					if i+1 == len(args) {
						flags = append(flags, "-"+name) // "needs an argument"
						break
					}
					i++
					v = args[i]
				}
				flags = append(flags, "-"+name+"="+v)
				break
			}
		}
	}
	return operands, fs.Parse(flags)
}

func takesValue(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && !isBoolFlag(f)
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// usageOf is the synopsis of a subcommand (its usage line without the
// description), for the message of a refused argument.
func usageOf(name string) string {
	synopsis, _, _ := strings.Cut(usages[name], "   ")
	return "usage: mailtee " + synopsis
}
