package queue

import (
	"errors"
	"fmt"
	"testing"
)

// codedErr is a delivery error that knows its enhanced status code, as
// deliver.Error and dnsresolve.Error do.
type codedErr struct {
	code string
	perm bool
}

func (e codedErr) Error() string        { return "coded " + e.code }
func (e codedErr) EnhancedCode() string { return e.code }
func (e codedErr) IsPermanent() bool    { return e.perm }

// DSN is the one reading of an outcome's status code, for the queue file
// and the log line alike (the log used to have its own, which said 4.0.0
// for a deferral to a suspended next hop whose reason had a code).
func TestDSN(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, "2.0.0"},
		{codedErr{code: "5.1.1", perm: true}, "5.1.1"},
		{fmt.Errorf("wrapped: %w", codedErr{code: "4.4.1"}), "4.4.1"},
		{codedErr{perm: true}, "5.0.0"},
		{codedErr{}, "4.0.0"},
		{errors.New("plain"), "4.0.0"},
		{suspendedError{codedErr{code: "4.4.1"}}, "4.4.1"},
		{suspendedError{errors.New("plain")}, "4.0.0"},
	} {
		if got := DSN(c.err); got != c.want {
			t.Errorf("DSN(%v) = %s; want %s", c.err, got, c.want)
		}
	}
}
