// Package ledgerhttp serves a ledger read-only to peers as JSON and
// reads a peer's: how `mailtee report` on the primary follows a copy
// into the relay's ledger (ledger_peers, ledger_peer_token_file).
//
// The endpoints, all GET, under /ledger/v1/:
//
//	messages?since=T&until=T&user=ADDR&limit=N   {"messages": [...]}
//	message?node=NODE&id=QUEUEID                 {"message": {...}} or 404
//	children?node=NODE&id=QUEUEID                {"messages": [...]}
//	gaps?since=T&until=T                         {"gaps": [...]}
//
// T is RFC 3339 (with fractions); an absent parameter is unbounded.
// Errors are {"error": "..."} with a 4xx or 5xx status. Who may call is
// internal/web's business (the peer token): the handler assumes the
// caller was let in.
package ledgerhttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
)

// Prefix is where the handler's paths begin.
const Prefix = "/ledger/v1/"

// MaxLimit bounds limit=N so that a peer's one request cannot ask the
// server to build an unbounded reply twice over.
const MaxLimit = 1_000_000

type messagesReply struct {
	Messages []ledger.Message `json:"messages"`
}

type messageReply struct {
	Message ledger.Message `json:"message"`
}

type gapsReply struct {
	Gaps []ledger.Gap `json:"gaps"`
}

type errorReply struct {
	Error string `json:"error"`
}

// Handler serves r under Prefix (mount it at Prefix).
func Handler(r ledger.Reader) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeErr(w, http.StatusMethodNotAllowed, "read-only: GET only")
			return
		}
		q := req.URL.Query()
		ctx := req.Context()
		// Mounted at Prefix whole or behind http.StripPrefix.
		switch strings.TrimPrefix(strings.TrimPrefix(req.URL.Path, Prefix), "/") {
		case "messages":
			f, err := filterOf(q)
			if err != nil {
				writeErr(w, http.StatusBadRequest, err.Error())
				return
			}
			ms, err := r.Messages(ctx, f)
			if err != nil {
				writeErr(w, http.StatusInternalServerError, "reading the ledger: "+err.Error())
				return
			}
			writeJSON(w, messagesReply{Messages: nonNil(ms)})
		case "message":
			id := q.Get("id")
			if id == "" {
				writeErr(w, http.StatusBadRequest, "message: id= is required")
				return
			}
			m, ok, err := r.Message(ctx, q.Get("node"), id)
			if err != nil {
				writeErr(w, http.StatusInternalServerError, "reading the ledger: "+err.Error())
				return
			}
			if !ok {
				writeErr(w, http.StatusNotFound, noMessage+id)
				return
			}
			writeJSON(w, messageReply{Message: m})
		case "children":
			id := q.Get("id")
			if id == "" {
				writeErr(w, http.StatusBadRequest, "children: id= is required")
				return
			}
			ms, err := r.Children(ctx, q.Get("node"), id)
			if err != nil {
				writeErr(w, http.StatusInternalServerError, "reading the ledger: "+err.Error())
				return
			}
			writeJSON(w, messagesReply{Messages: nonNil(ms)})
		case "gaps":
			since, err := timeParam(q, "since")
			if err != nil {
				writeErr(w, http.StatusBadRequest, err.Error())
				return
			}
			until, err := timeParam(q, "until")
			if err != nil {
				writeErr(w, http.StatusBadRequest, err.Error())
				return
			}
			gs, err := r.Gaps(ctx, since, until)
			if err != nil {
				writeErr(w, http.StatusInternalServerError, "reading the ledger: "+err.Error())
				return
			}
			if gs == nil {
				gs = []ledger.Gap{}
			}
			writeJSON(w, gapsReply{Gaps: gs})
		default:
			writeErr(w, http.StatusNotFound, "no such ledger endpoint: "+req.URL.Path)
		}
	})
}

func nonNil(ms []ledger.Message) []ledger.Message {
	if ms == nil {
		return []ledger.Message{}
	}
	return ms
}

// filterOf reads a Filter from a query: since, until, user, limit.
func filterOf(q url.Values) (ledger.Filter, error) {
	var f ledger.Filter
	var err error
	if f.Since, err = timeParam(q, "since"); err != nil {
		return f, err
	}
	if f.Until, err = timeParam(q, "until"); err != nil {
		return f, err
	}
	f.User = q.Get("user")
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > MaxLimit {
			return f, fmt.Errorf("limit=%q: want a count from 0 to %d", s, MaxLimit)
		}
		f.Limit = n
	}
	return f, nil
}

func timeParam(q url.Values, name string) (time.Time, error) {
	s := q.Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s=%q: want an RFC 3339 time (2026-12-07T10:00:00Z)", name, s)
	}
	return t, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(errorReply{Error: msg})
}

// MinTokenLen is the shortest token ReadToken takes.
const MinTokenLen = 16

// ReadToken reads the peers' shared token (ledger_peer_token_file): its
// content, blanks around it trimmed, one word of printable ASCII of at
// least MinTokenLen characters (an empty or short token would open the
// ledger to anyone who guesses it). The client and the listener read it
// alike.
func ReadToken(file string) (string, error) {
	if !filepath.IsAbs(file) {
		return "", fmt.Errorf("%s: expected an absolute path", file)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(data))
	switch {
	case tok == "":
		return "", fmt.Errorf("%s: empty; put a token in it, e.g.: openssl rand -hex 32 > %s", file, file)
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", fmt.Errorf("%s: the token has blanks or several lines; it is sent as one HTTP header value", file)
	case len(tok) < MinTokenLen:
		return "", fmt.Errorf("%s: the token has %d characters, fewer than %d; make a longer one, e.g.: openssl rand -hex 32 > %s", file, len(tok), MinTokenLen, file)
	}
	for _, c := range tok {
		if c < 0x21 || c > 0x7e {
			return "", fmt.Errorf("%s: the token has a character that is not printable ASCII", file)
		}
	}
	return tok, nil
}

var errNotFound = errors.New("not found")

const noMessage = "no message "

// ctxErr is ctx's error when it ended, for messages that say so.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
