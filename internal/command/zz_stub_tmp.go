package command

import (
	"context"
	"time"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/mailcopy"
)

type Spec struct {
	Command, Shell string
	Env            []string
	Dir            string
	TimeLimit      time.Duration
	Envelope       mailcopy.Envelope
	Flags          mailcopy.Flags
}

func Run(ctx context.Context, s Spec, msg *deliver.Message) error { return nil }

type Attrs struct {
	Home, User, Shell, Sender, Recipient, OrigRecipient, Local, Extension, Domain string
	ClientName, ClientAddr, ClientHelo, ClientProtocol                            string
}

func Env(a Attrs, export []string) []string { return nil }
func Filter(s, allowed string) string       { return s }
