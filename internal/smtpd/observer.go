package smtpd

import "crypto/tls"

// Observer is told of the session events that Postfix's smtpd logs and
// that postfix_exporter counts from those lines (internal/metrics): a
// typed hook beside the log, so that a metric never depends on a log
// line's wording. It is called where the line is logged, from many
// goroutines at once, and must not block.
type Observer interface {
	Connect()    // "connect from"
	Disconnect() // "disconnect from"
	// Lost: the client went away or timed out after the command named
	// ("lost connection after DATA"; "STARTTLS", or "CONNECT" in
	// wrapper mode): postfix_exporter's after_stage.
	Lost(after string)
	// Reject: a recipient refused with this reply code ("NOQUEUE:
	// reject: RCPT").
	Reject(code int)
	// Accepted: a message got its queue ID ("QUEUEID: client=").
	Accepted()
	// TLS: a TLS handshake with the client completed (Postfix's "TLS
	// connection established from").
	TLS(cs tls.ConnectionState)
}

type noObserver struct{}

func (noObserver) Connect()                {}
func (noObserver) Disconnect()             {}
func (noObserver) Lost(string)             {}
func (noObserver) Reject(int)              {}
func (noObserver) Accepted()               {}
func (noObserver) TLS(tls.ConnectionState) {}
