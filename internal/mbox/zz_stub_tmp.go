package mbox

import (
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/mailcopy"
)

type Owner struct{ UID, GID uint32 }
type Options struct {
	Envelope      mailcopy.Envelope
	Flags         mailcopy.Flags
	Locks         []string
	SizeLimit     int64
	Chown         *Owner
	StrictOwner   uint32
	Strict        bool
	StaleLockTime time.Duration
	LockAttempts  int
	LockDelay     time.Duration
}

func Deliver(path string, msg *deliver.Message, o Options) error { return nil }
func SpoolCred(spoolDir string, uid, gid uint32) (uint32, uint32, *Owner) {
	return uid, gid, nil
}
