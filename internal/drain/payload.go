// Package drain retires a node of a mailtee fleet without losing mail
// (mailtee drain), and takes what other nodes hand over.
//
// A drain stops accepting (SMTP listeners and pickup closed, the node
// "draining" in fleet_nodes), makes every queued message due and waits
// until each has had an attempt (or the wait given ends), then hands
// every message left to another node through the fleet's PostgreSQL
// (internal/fleet/handoff.go): body, per-recipient state, arrival, the
// migration settings it was accepted with and its ledger identity, in
// one row per message. Once the queue is empty the server exits.
//
// What a crash at any moment may leave is resolved from small marker
// files in queue_directory/handoff:
//
//   - out/ID: message ID was being offered. At the next start it is not
//     delivered until the database says whether the offer was committed
//     (then it is the fleet's, and goes from here) or not (then it
//     stays here).
//   - in/ID: message ID was being taken from the fleet. It is not
//     delivered until its row is marked done, so that a message is never
//     both delivered here and imported again.
//
// The receiver derives a message's queue ID from its hand-off key, and
// the import finds one stored already: a claimed row is taken at most
// once, whatever crashes between the import and the done mark.
package drain

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/mailtee/mailtee/internal/queue"
)

// The payload of a hand-off row:
//
//	"MAILTEE-HANDOFF1\n"
//	JSON(header) "\n"
//	the body, as the queue stores it (CRLF line endings)
//
// The header carries the message's state (queue.Exported), the record
// of its migration settings (internal/migration, null when none) and
// the body's CRC-32C.
const magic = "MAILTEE-HANDOFF1\n"

type header struct {
	Msg      *queue.Exported `json:"msg"`
	Settings json.RawMessage `json:"settings,omitempty"`
	Sum      uint32          `json:"sum"`
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Encode is the payload of message x with its body and settings record.
func Encode(x *queue.Exported, settings, body []byte) ([]byte, error) {
	if int64(len(body)) != x.Size {
		return nil, fmt.Errorf("%s: body of %d bytes, the message says %d", x.ID, len(body), x.Size)
	}
	h := header{Msg: x, Sum: crc32.Checksum(body, crcTable)}
	if len(settings) > 0 {
		h.Settings = settings
	}
	js, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(magic)+len(js)+1+len(body))
	out = append(out, magic...)
	out = append(out, js...)
	out = append(out, '\n')
	return append(out, body...), nil
}

// Decode reads a payload; whatever its bytes, a message it returns has
// passed queue.Exported.Check and its body's checksum.
func Decode(p []byte) (x *queue.Exported, settings, body []byte, err error) {
	rest, ok := bytes.CutPrefix(p, []byte(magic))
	if !ok {
		return nil, nil, nil, errors.New("hand-off payload: not a mailtee hand-off (no MAILTEE-HANDOFF1 line)")
	}
	js, body, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return nil, nil, nil, errors.New("hand-off payload: no end of header")
	}
	var h header
	if err := json.Unmarshal(js, &h); err != nil {
		return nil, nil, nil, fmt.Errorf("hand-off payload: header: %v", err)
	}
	if h.Msg == nil {
		return nil, nil, nil, errors.New("hand-off payload: no message in the header")
	}
	if err := h.Msg.Check(); err != nil {
		return nil, nil, nil, fmt.Errorf("hand-off payload: %v", err)
	}
	if int64(len(body)) != h.Msg.Size {
		return nil, nil, nil, fmt.Errorf("hand-off payload: %s: body of %d bytes, the header says %d", h.Msg.ID, len(body), h.Msg.Size)
	}
	if crc32.Checksum(body, crcTable) != h.Sum {
		return nil, nil, nil, fmt.Errorf("hand-off payload: %s: body checksum mismatch", h.Msg.ID)
	}
	if len(h.Settings) > 0 && !bytes.Equal(h.Settings, []byte("null")) {
		settings = h.Settings
	}
	return h.Msg, settings, body, nil
}

// QueueID is the queue ID a receiver gives the message (from, id): the
// same every time, so that a second import of it finds the first.
func QueueID(from, id string) string {
	s := sha256.Sum256([]byte(from + "\x00" + id))
	return strings.ToUpper(hex.EncodeToString(s[:10]))
}
