package asuser

import (
	"context"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/mailcopy"
	"github.com/mailtee/mailtee/internal/mbox"
)

func (p *Pool) Mbox(ctx context.Context, c Cred, path string, msg *deliver.Message, o mbox.Options) error {
	return nil
}
func (p *Pool) MaildirEnv(ctx context.Context, c Cred, dir string, msg *deliver.Message, env mailcopy.Envelope) error {
	return nil
}
