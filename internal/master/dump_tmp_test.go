package master

import (
	"fmt"
	"testing"
)

func TestDumpDistros(t *testing.T) {
	for _, n := range []string{"dms", "mailcow", "iredmail", "modoboa", "mailu", "miab"} {
		l := distroCheck(t, n)
		fmt.Printf("=== %s\n", n)
		for _, d := range l {
			if d.Severity.String() != "info" {
				fmt.Printf("%v\n", d)
			}
		}
	}
}
