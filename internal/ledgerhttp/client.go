package ledgerhttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
)

// Defaults for a Client.
const (
	DefaultTimeout  = 30 * time.Second
	DefaultMaxReply = 256 << 20 // a peer's reply larger than this is refused
)

// Client is a peer's ledger read over HTTP: a ledger.Reader.
type Client struct {
	base  *url.URL
	token string
	// HTTP does the requests; its Timeout bounds each one. Set a
	// TLS configuration on its transport for a peer with a private CA.
	HTTP *http.Client
	// MaxReply bounds the size of one reply, in bytes.
	MaxReply int64
}

// NewClient returns a Client for the peer at base (http[s]://host:port,
// as ledger_peers lists it) that sends token as a bearer token.
func NewClient(base, token string) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(base))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("ledger_peers: %q is not an http:// or https:// URL (http[s]://host:port)", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Client{base: u, token: token, HTTP: &http.Client{Timeout: DefaultTimeout}, MaxReply: DefaultMaxReply}, nil
}

// URL is the peer's URL, as given.
func (c *Client) URL() string { return c.base.String() }

func (c *Client) get(ctx context.Context, endpoint string, q url.Values, v any) error {
	u := *c.base
	u.Path += Prefix + endpoint
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("peer %s: %w", c.base, err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("peer %s: %w", c.base, ctxErr(ctx, err))
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, c.MaxReply+1)
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(body, 4096))
		var e errorReply
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		// Only the handler's own "no message" is an answer; a 404 from
		// something else at that URL is an error.
		if resp.StatusCode == http.StatusNotFound && endpoint == "message" && strings.HasPrefix(e.Error, noMessage) {
			return errNotFound
		}
		hint := ""
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			hint = " (check that ledger_peer_token_file holds the same token on both hosts, and the peer's metrics_networks)"
		case http.StatusNotFound:
			hint = " (is the peer's metrics_listen serving its ledger, and is it mailtee?)"
		}
		return fmt.Errorf("peer %s: GET %s: %s: %s%s", c.base, u.Path, resp.Status, clip(msg, 300), hint)
	}
	n := &countingReader{r: body}
	if err := json.NewDecoder(n).Decode(v); err != nil {
		if n.n > c.MaxReply {
			return fmt.Errorf("peer %s: GET %s: reply larger than %d bytes; narrow the report (--since, --until)", c.base, u.Path, c.MaxReply)
		}
		return fmt.Errorf("peer %s: GET %s: bad reply: %w", c.base, u.Path, ctxErr(ctx, err))
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func timeQ(q url.Values, name string, t time.Time) {
	if !t.IsZero() {
		q.Set(name, t.UTC().Format(time.RFC3339Nano))
	}
}

// Messages implements ledger.Reader.
func (c *Client) Messages(ctx context.Context, f ledger.Filter) ([]ledger.Message, error) {
	q := url.Values{}
	timeQ(q, "since", f.Since)
	timeQ(q, "until", f.Until)
	if f.User != "" {
		q.Set("user", f.User)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var r messagesReply
	if err := c.get(ctx, "messages", q, &r); err != nil {
		return nil, err
	}
	return r.Messages, nil
}

// Message implements ledger.Reader.
func (c *Client) Message(ctx context.Context, node, id string) (ledger.Message, bool, error) {
	q := url.Values{"id": {id}}
	if node != "" {
		q.Set("node", node)
	}
	var r messageReply
	if err := c.get(ctx, "message", q, &r); err != nil {
		if errors.Is(err, errNotFound) {
			return ledger.Message{}, false, nil
		}
		return ledger.Message{}, false, err
	}
	return r.Message, true, nil
}

// Children implements ledger.Reader.
func (c *Client) Children(ctx context.Context, node, id string) ([]ledger.Message, error) {
	q := url.Values{"id": {id}}
	if node != "" {
		q.Set("node", node)
	}
	var r messagesReply
	if err := c.get(ctx, "children", q, &r); err != nil {
		return nil, err
	}
	return r.Messages, nil
}

// Gaps implements ledger.Reader.
func (c *Client) Gaps(ctx context.Context, since, until time.Time) ([]ledger.Gap, error) {
	q := url.Values{}
	timeQ(q, "since", since)
	timeQ(q, "until", until)
	var r gapsReply
	if err := c.get(ctx, "gaps", q, &r); err != nil {
		return nil, err
	}
	return r.Gaps, nil
}

var _ ledger.Reader = (*Client)(nil)
