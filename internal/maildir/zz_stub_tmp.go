package maildir

import (
	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/mailcopy"
)

func DeliverEnv(dir string, msg *deliver.Message, env mailcopy.Envelope) error {
	return Deliver(dir, msg, env.DeliveredTo)
}
