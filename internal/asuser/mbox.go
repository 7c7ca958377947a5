package asuser

import (
	"context"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/mailcopy"
	"github.com/mailtee/mailtee/internal/maildir"
	"github.com/mailtee/mailtee/internal/mbox"
)

// Mbox appends msg to the mbox file path as c; see mbox.Deliver. c is
// what mbox.SpoolCred says (a spool only root may write is not for a
// helper: the server writes it itself). The error is nil or a
// *deliver.Error.
func (p *Pool) Mbox(ctx context.Context, c Cred, path string, msg *deliver.Message, o mbox.Options) error {
	return p.do(ctx, c, request{Op: "mbox", Path: path, QueueID: msg.ID, From: msg.From, Mbox: &o, Size: msg.Size}, msg)
}

// MaildirEnv delivers msg into the Maildir dir as c, with the envelope
// lines env says; see maildir.DeliverEnv. The error is nil or a
// *deliver.Error.
func (p *Pool) MaildirEnv(ctx context.Context, c Cred, dir string, msg *deliver.Message, env mailcopy.Envelope) error {
	return p.do(ctx, c, request{Op: "maildir", Path: dir, QueueID: msg.ID, From: msg.From, DeliveredTo: env.DeliveredTo, Env: &env, Size: msg.Size}, msg)
}

// The helper's side of the requests above. The envelope's time travels
// as an instant with its offset; the From_ line shows it in the
// helper's local time, which is the server's because the helper gets
// the server's TZ (as Postfix's import_environment passes TZ on).

func doMaildir(req request, msg *deliver.Message) error {
	env := mailcopy.Envelope{Sender: req.From, DeliveredTo: req.DeliveredTo}
	if req.Env != nil {
		env = *req.Env
	}
	return maildir.DeliverEnv(req.Path, msg, env)
}

func doMbox(req request, msg *deliver.Message) error {
	if req.Mbox == nil {
		return failure("mbox request without options")
	}
	return mbox.Deliver(req.Path, msg, *req.Mbox)
}
