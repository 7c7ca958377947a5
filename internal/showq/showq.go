// Package showq formats the queue for the administrator as Postfix's
// showq does for mailq and postqueue -j: the text listing with its
// columns, and the JSON lines. Everything that came from outside (a next
// hop's reply, addresses) is shown as the mail log shows it.
package showq

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/queue"
)

// Class is the Postfix queue a message would be in: hold, active
// (being delivered), deferred (a recipient was tried and failed), or
// incoming (not tried yet), for postsuper's queue operands and
// postqueue -j's queue_name.
func Class(m queue.Info) string {
	switch {
	case m.Hold:
		return "hold"
	case m.Active:
		return "active"
	}
	for _, r := range m.Rcpts {
		if r.Status == "deferred" {
			return "deferred"
		}
	}
	return "incoming"
}

// pending are the recipients mailq shows: those not delivered or
// bounced yet.
func pending(m queue.Info) []queue.RcptInfo {
	var out []queue.RcptInfo
	for _, r := range m.Rcpts {
		if r.Status != "sent" && r.Status != "bounced" {
			out = append(out, r)
		}
	}
	return out
}

// Print prints the queue the way Postfix's mailq does with long
// queue IDs (src/postqueue/showq_compat.c, L_STRING_FORMAT): ID (with
// '!' when held, '*' when being delivered), size, arrival, sender, then
// each pending recipient after the reason of its last failure, right-
// aligned at column 76 as Postfix's. mailtee's IDs are 19
// characters where Postfix's long ones are 17: the ID column is as wide
// as the longest ID with its mark, so the columns line up under the
// header.
func Print(w io.Writer, list []queue.Info) {
	if len(list) == 0 {
		fmt.Fprintln(w, "Mail queue is empty")
		return
	}
	width := 17 // Postfix's long-ID column
	for _, m := range list {
		width = max(width, len(maillog.Printable(m.ID))+1)
	}
	dashes := width - len("Queue ID")
	heading := strings.Repeat("-", dashes/2) + "Queue ID" + strings.Repeat("-", dashes-dashes/2)
	row := fmt.Sprintf("%%-%ds %%8s %%-19s %%s\n", width)
	fmt.Fprintf(w, row, heading, "--Size--", "---Arrival Time----", "--Sender/Recipient------")
	var total int64
	for i, m := range list {
		if i > 0 {
			fmt.Fprintln(w)
		}
		mark := ""
		switch {
		case m.Hold:
			mark = "!"
		case m.Active:
			mark = "*"
		}
		from := m.From
		if from == "" {
			from = "MAILER-DAEMON"
		}
		// Everything but the size and date came from outside (a next
		// hop's reply, a client's addresses, a spool file): shown as the
		// log shows it, so that no escape sequence, CR or NUL reaches
		// the administrator's terminal, as Postfix's showq.
		fmt.Fprintf(w, row, maillog.Printable(m.ID)+mark, fmt.Sprint(m.Size), m.Arrival.Format("Mon Jan _2 15:04:05"), maillog.Printable(from))
		for _, r := range pending(m) {
			// Each recipient's reason, where Postfix prints one only
			// when it differs from the previous recipient's: a reader
			// (or a script) of one line pair needs no context.
			if show := maillog.Printable(r.Reason); show != "" {
				fmt.Fprintf(w, "%*s(%s)\n", max(76-len(show), 0), "", show)
			}
			fmt.Fprintf(w, row, "", "", "", maillog.Printable(r.Addr))
		}
		total += m.Size
	}
	fmt.Fprintf(w, "\n-- %d Kbytes in %d Request%s.\n", total/1024, len(list), map[bool]string{true: "s", false: ""}[len(list) != 1])
}

// jsonMessage is one line of postqueue -j, in Postfix's format
// (src/postqueue/showq_json.c).
type jsonMessage struct {
	QueueName    string          `json:"queue_name"`
	QueueID      string          `json:"queue_id"`
	ArrivalTime  int64           `json:"arrival_time"`
	MessageSize  int64           `json:"message_size"`
	ForcedExpire bool            `json:"forced_expire"`
	Sender       string          `json:"sender"`
	Recipients   []jsonRecipient `json:"recipients"`
}

type jsonRecipient struct {
	OrigAddress string `json:"orig_address"`
	Address     string `json:"address"`
	DelayReason string `json:"delay_reason,omitempty"`
}

// PrintJSON prints the queue as postqueue -j: one JSON object per
// message and line, strings made printable as Postfix does.
func PrintJSON(w io.Writer, list []queue.Info) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for _, m := range list {
		jm := jsonMessage{QueueName: Class(m), QueueID: m.ID, ArrivalTime: m.Arrival.Unix(), MessageSize: m.Size,
			Sender: maillog.Printable(m.From), Recipients: []jsonRecipient{}}
		for _, r := range pending(m) {
			jm.Recipients = append(jm.Recipients, jsonRecipient{Address: maillog.Printable(r.Addr), DelayReason: maillog.Printable(r.Reason)})
		}
		if err := enc.Encode(jm); err != nil {
			return err
		}
	}
	return nil
}
