// Package envelope holds the SMTP envelope of a message as it moves from
// the SMTP server (or sendmail) to the queue and on to delivery.
package envelope

import "time"

// Envelope is what the queue stores about a message besides its content.
type Envelope struct {
	// From is the reverse path: the sender's address, or "" for the null
	// sender of bounces.
	From  string
	Rcpts []Rcpt

	// Where the message came from, for Received: and logs.
	ClientName string    // reverse DNS name, or "unknown"
	ClientAddr string    // IP address, or "" for local submission (sendmail)
	Helo       string    // HELO/EHLO argument
	Protocol   string    // "ESMTP", "SMTP", "ESMTPS", "local"
	Arrival    time.Time // when the message was accepted
	SMTPUTF8   bool      // the client asked for SMTPUTF8
	BodyType   string    // "7BIT", "8BITMIME" or ""
	// Notification marks a delivery status notification mailtee made
	// itself: if it cannot be delivered either, it is logged and
	// dropped, never answered with another notification.
	Notification bool `json:",omitempty"`
	// Parent is the queue ID of the message this one was made from (an
	// alias's forward, a bounce notice), so that a message's offspring
	// can be traced; "" for mail that came from outside.
	Parent string `json:",omitempty"`
	// MessageID is the Message-ID header field's value (cleanup reads
	// it, or makes it for a local submission that has none), for the
	// ledger: "" when the message has none.
	MessageID string `json:",omitempty"`
	// DSN (RFC 3461) ENVID and RET ("FULL", "HDRS" or ""), as the
	// client gave them; set by import-postfix-queue from Postfix's queue.
	EnvID string `json:",omitempty"`
	Ret   string `json:",omitempty"`
	// Settings names the migration settings (dual_delivery_phase, its
	// maps and the copy maps, internal/migration) the message was
	// accepted with, so that it is finished under them whatever changes
	// later; "" for a message queued before they were recorded, which
	// follows the settings in force.
	Settings string `json:",omitempty"`
	// LedgerNode and LedgerID, for a message another node of the fleet
	// handed over (mailtee drain), are the node and queue ID it was
	// accepted under: the ledger records its outcomes here under them,
	// so that the report shows one message. "" otherwise.
	LedgerNode string `json:",omitempty"`
	LedgerID   string `json:",omitempty"`
}

// Rcpt is one envelope recipient.
type Rcpt struct {
	// Addr is the address to deliver to.
	Addr string
	// Orig is the address as the client gave it, before any rewriting,
	// for DSNs and logs ("orig_to=" in Postfix's logs).
	Orig string `json:",omitempty"`
	// Copy marks an automatic copy (recipient_bcc_maps, sender_bcc_maps,
	// always_bcc, mailbox_bcc_maps, a relay's forwarded copies): its
	// failures are reported to postmaster, never to the sender.
	Copy bool `json:",omitempty"`
	// Migration says what the migration layer made of this recipient:
	// "" an ordinary one; MigrationCopy a mailbox's copy
	// (recipient_bcc_maps, mailbox_bcc_maps; Copy is set too);
	// MigrationForward a mailbox's mail sent the way its copy would go
	// (dual_delivery_phase = forward; a real delivery, Copy unset).
	// Both leave by copy_transport when it is set and are never
	// delivered locally.
	Migration string `json:",omitempty"`
	// NotifyOwner, when set, is where failures for this recipient go
	// instead of the sender (Postfix's owner-alias convention).
	NotifyOwner string `json:",omitempty"`
	// DSN (RFC 3461) NOTIFY ("NEVER" or a list of SUCCESS, FAILURE,
	// DELAY) and ORCPT ("rfc822;addr", xtext decoded), "" when not given.
	Notify string `json:",omitempty"`
	ORcpt  string `json:",omitempty"`
}

// What Rcpt.Migration may say.
const (
	MigrationCopy    = "copy"
	MigrationForward = "forward"
)

// Hop is where a recipient's mail goes, as routing decides it and the
// queue groups deliveries by it.
type Hop struct {
	// Transport is the delivery transport: "smtp", "relay", "lmtp",
	// "local", "error", "discard" or any name a table gives.
	Transport string
	// Nexthop is as Postfix writes it: "[host]:port", "host", "host:port",
	// "unix:/path", "inet:host:port", a domain for local delivery, or the
	// reason text for the error and discard transports.
	Nexthop string
}

func (h Hop) String() string { return h.Transport + ":" + h.Nexthop }
