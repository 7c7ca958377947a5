package deliver

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/mailtee/mailtee/internal/maillog"
)

// transact runs one mail transaction on s and then caches or closes it.
func (d *delivery) transact(s *session) {
	d.talked = true
	s.uses++
	d.connUse = s.uses
	clear(d.here)
	stop := context.AfterFunc(d.ctx, func() { s.raw.Close() })
	ok := d.transaction(s)
	if stop() && ok && d.reusable(s) {
		d.c.release(s)
	} else {
		s.close()
	}
}

// transaction sends the message to the pending recipients over s and
// reports whether s is still in a state to be reused.
func (d *delivery) transaction(s *session) bool {
	msg := d.msg
	d.smtputf8 = false
	if msg.SMTPUTF8 {
		// smtputf8.go
		d.smtputf8, _ = s.cl.Extension("SMTPUTF8")
		if !d.smtputf8 && needsSMTPUTF8(msg, d.pendingRcpts()) {
			// Permanent, but other servers may still be tried
			// (Postfix's SMTP_MISC_FAIL_SOFT_NON_FINAL).
			d.keepAll(permf(s.relay, "5.6.7", "SMTPUTF8 is required, but was not offered by host %s", s.namaddr))
			return true
		}
	}
	if max, ok := s.cl.MaxMessageSize(); ok && max > 0 && msg.Size > int64(max) {
		d.finishAll(permf(s.relay, "5.3.4", "message size %d exceeds size limit %d of server %s", msg.Size, max, s.namaddr))
		return true
	}
	body, err := msg.Open()
	if err != nil {
		d.keepAll(tempf("none", "4.3.0", "cannot read message %s: %v", msg.ID, err))
		return true
	}
	defer body.Close()

	rcpts := make([]string, len(d.pending))
	for k, i := range d.pending {
		rcpts[k] = d.res[i].Rcpt
	}
	if s.canPipeline(msg.From, rcpts) {
		return d.pipelined(s, body)
	}

	// go-smtp adds SIZE= and BODY=8BITMIME itself when the server offers
	// them (the latter whatever Body says; that is harmless, RFC 6152
	// allows 7-bit content under BODY=8BITMIME). 8-bit content goes out
	// even to a server without 8BITMIME, as Postfix sends it.
	opts := &smtp.MailOptions{Size: msg.Size, UTF8: d.smtputf8}
	if msg.EightBit {
		opts.Body = smtp.Body8BitMIME
	}
	msg.dsnMail(opts)
	if err := s.cl.Mail(msg.From, opts); err != nil {
		e, ok := d.refused(s, err, "MAIL FROM command", "sending MAIL FROM")
		if !ok {
			return false
		}
		// A refused sender refuses the message, for every recipient.
		d.outcome(slices.Clone(d.pending), e)
		return s.reset()
	}
	var accepted []int
	for _, i := range slices.Clone(d.pending) {
		err := s.cl.Rcpt(d.res[i].Rcpt, msg.dsnRcpt(i))
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		e, ok := d.refused(s, err, "RCPT TO command", "sending RCPT TO")
		if !ok {
			return false
		}
		d.outcome([]int{i}, e)
	}
	if len(accepted) == 0 {
		return s.reset()
	}
	w, err := s.cl.Data()
	if err != nil {
		e, ok := d.refused(s, err, "DATA command", "sending DATA command")
		if !ok {
			return false
		}
		d.outcome(accepted, e)
		return s.reset()
	}
	if !d.sendBody(s, w, body) {
		return false
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.cl.CommandTimeout))
	if !s.lmtp {
		resp, err := w.CloseWithResponse()
		if err != nil {
			e, broken := s.failure(err, "end of DATA command", afterDot)
			if broken {
				if isWrite(err) {
					e = s.ioError(err, "sending message body")
				}
				d.keepAll(e)
				return false
			}
			d.outcome(accepted, e)
			return e.Code != 421 // the server is closing the session
		}
		for _, i := range accepted {
			d.succeed(i, s.relay, "250 "+maillog.OneLine(resp.StatusText))
		}
		return true
	}
	// LMTP: one reply per accepted recipient, in order.
	resps, err := w.CloseWithLMTPResponse()
	var refused smtp.LMTPDataError
	errors.As(err, &refused)
	where := afterDot
	if isWrite(err) {
		where = "sending message body"
	}
	healthy := true
	for _, i := range accepted {
		rcpt := d.res[i].Rcpt
		if r, ok := resps[rcpt]; ok {
			d.succeed(i, s.relay, "250 "+maillog.OneLine(r.StatusText))
		} else if se, ok := refused[rcpt]; ok {
			d.outcome([]int{i}, replyError(s.namaddr, s.relay, se, "end of DATA command"))
			if se.Code == 421 {
				healthy = false
			}
		} else {
			healthy = false
			d.keep(i, s.ioError(err, where))
		}
	}
	return healthy
}

// refused returns the error of a command the server refused; when the
// connection broke instead, every recipient still pending keeps that
// error and ok is false: the transaction, and the session, are over.
//
// So they are after a 421, whatever the command: the server is closing
// the connection (RFC 5321, section 3.8), and with PIPELINING the
// replies still to read would only say "lost connection". The 421 is
// kept for every pending recipient that has no reply of its own in this
// transaction, so that the caller sees the server's code and enhanced
// code ("421 4.7.28": the sender is throttled, slow down) rather than an
// I/O error. Postfix has no case for 421 there: it sends RSET and finds
// the connection gone, or caches the session if a server that said 421
// answers; mailtee closes it whatever the server does.
func (d *delivery) refused(s *session, err error, command, where string) (e *Error, ok bool) {
	e, broken := s.failure(err, command, where)
	if broken {
		d.keepAll(e)
		return nil, false
	}
	if e.Code == 421 {
		for _, i := range d.pending {
			if !d.here[i] {
				d.keep(i, e)
			}
		}
		return nil, false
	}
	return e, true
}

// afterDot is where a lost connection at the end of DATA leaves us: the
// server may have taken the message.
const afterDot = "sending end of data -- message may be sent more than once"

// sendBody copies the message body to w, the DATA stream, and reports
// whether it all went; if not, every pending recipient keeps the reason
// and the session is not to be used again.
func (d *delivery) sendBody(s *session, w io.Writer, body io.Reader) bool {
	src := &ContentReader{R: body}
	// The deadline is set under Shape, so that a bandwidth limit's
	// waiting does not count against the server.
	nw := &deadlineWriter{w: w, conn: s.conn, d: s.cl.CommandTimeout}
	var dst io.Writer = nw
	if d.policy.Shape != nil {
		dst = d.policy.Shape(d.ctx, dst)
	}
	buf := copyBufs.Get().(*[]byte)
	_, err := io.CopyBuffer(dst, src, *buf)
	copyBufs.Put(buf)
	if err == nil {
		return true
	}
	switch {
	case src.Err != nil:
		d.keepAll(tempf("none", "4.3.0", "error reading message %s: %v", d.msg.ID, src.Err))
	case nw.err == nil && d.ctx.Err() != nil:
		d.keepAll(tempf("none", "4.4.7", "delivery interrupted: %v", d.ctx.Err()))
	case nw.err == nil:
		// Shape failed, not the server.
		d.keepAll(tempf("none", "4.3.0", "error sending message %s through the delivery policy's bandwidth limit: %v", d.msg.ID, err))
	default:
		d.keepAll(s.ioError(err, "sending message body"))
	}
	if src.Err != nil || nw.err == nil {
		// Closing without the final dot makes the server drop the
		// message; a QUIT now would only be more message content.
		s.raw.Close()
	}
	return false
}

// copyBufs are the buffers message bodies are sent through, reused
// rather than allocated for every message.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func isWrite(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "write"
}
