package report

import (
	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/ledgerhttp"
)

// PeersOf makes a Peer for each ledger_peers URL, with the token of
// ledger_peer_token_file: the same for `mailtee report` and serve's
// dashboard.
func PeersOf(cfg *config.Config) ([]Peer, error) {
	urls := cfg.List("ledger_peers")
	if len(urls) == 0 {
		return nil, nil
	}
	var token string
	if f := cfg.Get("ledger_peer_token_file"); f != "" {
		t, err := ledgerhttp.ReadToken(f)
		if err != nil {
			return nil, err
		}
		token = t
	}
	var peers []Peer
	for _, u := range urls {
		c, err := ledgerhttp.NewClient(u, token)
		if err != nil {
			return nil, err
		}
		peers = append(peers, Peer{URL: c.URL(), Reader: c})
	}
	return peers, nil
}
