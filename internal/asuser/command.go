package asuser

import (
	"context"
	"encoding/json"
	"syscall"

	"github.com/mailtee/mailtee/internal/command"
	"github.com/mailtee/mailtee/internal/deliver"
)

// Command runs s with msg on its input as c (see command.Run): the
// helper, which already has c's uid and gid, starts it, so the command
// gets no privilege of the server's. When ctx ends, the server stops
// waiting and the delivery is deferred; the command itself still ends
// at s.TimeLimit, which the helper enforces.
func (p *Pool) Command(ctx context.Context, c Cred, s command.Spec, msg *deliver.Message) error {
	// A request is one record, of which the helper reads at most
	// maxRecord bytes; the message has the rest when it is inline.
	if b, err := json.Marshal(s); err != nil || len(b) > maxRecord-maxInline-1024 {
		return failure("command request too large (%d bytes of command and environment): %.100q", len(b), s.Command)
	}
	return p.do(ctx, c, request{Op: "command", Command: &s, QueueID: msg.ID, From: msg.From, Size: msg.Size}, msg)
}

// runCommand is the helper's side of Command.
func runCommand(req request, msg *deliver.Message) error {
	if req.Command == nil {
		return failure("command request without a command")
	}
	// Commands create files as under Postfix, whose master(8) sets
	// umask 077 for all its processes. The whole helper gets it: what
	// else it writes (Maildir, mbox) has explicit modes no wider.
	syscall.Umask(0o077)
	// The server's deadline does not reach the helper; the time limit
	// in the Spec bounds the command.
	return command.Run(context.Background(), *req.Command, msg)
}
