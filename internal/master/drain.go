package master

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/drain"
	"github.com/mailtee/mailtee/internal/maildrop"
)

// startHandoff starts the node's part in hand-offs (internal/drain):
// what the markers of an interrupted hand-off name is parked before the
// queue delivers anything, and, in a fleet, the messages other nodes
// hand to this one are taken each fleet_heartbeat_interval.
func (s *Server) startHandoff() *drain.Node {
	return drain.Start(drain.Options{
		Queue:         s.q,
		Fleet:         s.fleet,
		Settings:      s.mig,
		QueueDir:      QueueDir(s.cfg),
		Every:         mustDuration(s.cfg, "fleet_heartbeat_interval"),
		Log:           func(format string, args ...any) { s.log.Printf("drain", format, args...) },
		StopAccepting: s.stopAccepting,
	})
}

// Drained is closed once `mailtee drain` has emptied the queue: serve
// then stops (nil channel without a hand-off part: never). What
// sendmail dropped since pickup stopped stays in maildrop, unqueued:
// the log says so, since nobody else will deliver it.
func (s *Server) Drained() <-chan struct{} {
	if s.handoff == nil {
		return nil
	}
	s.drainedOnce.Do(func() {
		s.drained = make(chan struct{})
		go func() {
			<-s.handoff.Done()
			dir := filepath.Join(QueueDir(s.cfg), maildrop.DropDir)
			if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
				s.log.Printf("drain", "warning: %d local submission(s) (sendmail) wait in %s, which this drained node does not queue: start mailtee serve here again to deliver them, then drain again", len(ents), dir)
			}
			close(s.drained)
		}()
	})
	return s.drained
}

// stopAccepting closes the SMTP listeners (sessions in progress finish
// their transaction, for up to a minute) and the pickup of sendmail's
// drops, which wait in maildrop for the node's next start.
func (s *Server) stopAccepting() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.shutdownSMTP(ctx)
	if s.pickup != nil {
		s.pickup.Close()
	}
	s.log.Printf("drain", "SMTP listeners closed and pickup stopped: this node accepts no more mail")
}

// controlDrain answers "drain [to=NODE] [wait=DURATION]": one JSON line
// per change of the drain's progress ({"ok":true,"drain":{...}}), the
// last with Final set, or one line with the error.
func (s *Server) controlDrain(c net.Conn, arg string) {
	enc := json.NewEncoder(c)
	fail := func(err error) { enc.Encode(ControlReply{Error: err.Error()}) }
	req, err := parseDrainArgs(arg)
	if err != nil {
		fail(err)
		return
	}
	if s.fleet == nil {
		fail(drain.ErrNoFleet(s.cfg.Get("ledger_database")))
		return
	}
	st, err := s.handoff.Drain(req)
	if err != nil {
		fail(err)
		return
	}
	done := s.handoff.Watch()
	defer done()
	c.SetDeadline(time.Time{})
	for {
		c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if err := enc.Encode(drainReply{OK: true, Drain: &st}); err != nil || st.Final {
			return
		}
		// Unchanged for a while, the same line again: a client that
		// went away shows as a failed write.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st = s.handoff.Wait(ctx, st)
		cancel()
	}
}

type drainReply struct {
	OK    bool          `json:"ok"`
	Error string        `json:"error,omitempty"`
	Drain *drain.Status `json:"drain,omitempty"`
}

// parseDrainArgs reads "to=NODE wait=DURATION".
func parseDrainArgs(arg string) (drain.Request, error) {
	var req drain.Request
	for _, f := range strings.Fields(arg) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "to":
			req.To = v
		case "wait":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return req, fmt.Errorf("wait=%s: not a duration (30s, 5m)", v)
			}
			req.Wait = d
		default:
			return req, fmt.Errorf("drain: unknown argument %q", f)
		}
	}
	return req, nil
}

// ErrDrainRefused is a drain the server refused (no fleet, no node to
// take the mail): bad input rather than a failure.
var ErrDrainRefused = errors.New("drain refused")

// Drain asks the server of queue directory qdir to drain (mailtee
// drain) and calls progress with each status it reports; it returns the
// last. An error wraps ErrNoServer when none runs, ErrDrainRefused when
// the server refused the request.
func Drain(qdir string, req drain.Request, progress func(drain.Status)) (drain.Status, error) {
	var last drain.Status
	c, err := net.DialTimeout("unix", filepath.Join(qdir, controlName), 2*time.Second)
	if err != nil {
		return last, fmt.Errorf("%w (no control socket in %s: %v)", ErrNoServer, qdir, err)
	}
	defer c.Close()
	line := "drain"
	if req.To != "" {
		line += " to=" + req.To
	}
	if req.Wait > 0 {
		line += " wait=" + req.Wait.String()
	}
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return last, err
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for {
		c.SetReadDeadline(time.Now().Add(time.Minute))
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return last, fmt.Errorf("the server's answer ended: %w", err)
			}
			return last, errors.New("the server closed the connection before the drain ended (its log says why)")
		}
		var r drainReply
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return last, fmt.Errorf("bad reply from mailtee: %w", err)
		}
		if !r.OK {
			return last, fmt.Errorf("%w: %s", ErrDrainRefused, r.Error)
		}
		if r.Drain == nil {
			continue
		}
		last = *r.Drain
		if progress != nil {
			progress(last)
		}
		if last.Final {
			return last, nil
		}
	}
}
