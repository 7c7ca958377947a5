package maillog_test

import (
	"os"
	"time"

	"github.com/mailtee/mailtee/internal/maillog"
)

func ExampleLogger_Delivery() {
	// Lines normally start "Nov 25 12:00:00 HOST mailtee/smtp[PID]: ";
	// AppendDelivery gives the text alone.
	d := maillog.Delivery{
		ID:        "4F9D195432C",
		To:        "user1@students.iiit.ac.in",
		OrigTo:    "user1@relay.students.iiit.ac.in",
		Relay:     "aspmx.l.google.com[142.250.4.27]:25",
		Transport: "smtp",
		Delay:     1234 * time.Millisecond,
		Delays:    [4]time.Duration{20 * time.Millisecond, 5 * time.Millisecond, 600 * time.Millisecond, 609 * time.Millisecond},
		DSN:       "2.0.0",
		Status:    "sent",
		Reason:    "250 2.0.0 OK  1700000000 x1-20020a170902 - gsmtp",
	}
	os.Stdout.Write(append(maillog.AppendDelivery(nil, &d), '\n'))
	// Output:
	// 4F9D195432C: to=<user1@students.iiit.ac.in>, orig_to=<user1@relay.students.iiit.ac.in>, relay=aspmx.l.google.com[142.250.4.27]:25, delay=1.2, delays=0.02/0.01/0.6/0.61, dsn=2.0.0, status=sent (250 2.0.0 OK  1700000000 x1-20020a170902 - gsmtp)
}
