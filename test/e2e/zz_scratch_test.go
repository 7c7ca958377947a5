package e2e

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/mailtee/mailtee/internal/dashboard"
	"github.com/mailtee/mailtee/internal/ledger"
	"github.com/mailtee/mailtee/internal/ledgerhttp"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/report"
)

func scratchRelayEndpoint(t *testing.T, n *ledgerNet) {
	st, err := ledger.OpenReader(filepath.Join(n.relay.Dir, "data", "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Addr: fmt.Sprintf("%s:%d", relayIP, n.hport), Handler: ledgerhttp.Handler(st)}
	go srv.ListenAndServe()
	t.Cleanup(func() { srv.Close() })
}

func scratchPrimaryDash(t *testing.T, n *ledgerNet) {
	st, err := ledger.OpenReader(filepath.Join(n.primary.Dir, "data", "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := ledgerhttp.NewClient(fmt.Sprintf("http://%s:%d", relayIP, n.hport), ledgerToken)
	if err != nil {
		t.Fatal(err)
	}
	src := dashboard.NewSource(report.Sources{Local: st, Peers: []report.Peer{{URL: cl.URL(), Reader: cl}}}, func() []queue.Info { return nil })
	mux := http.NewServeMux()
	mux.Handle("/", dashboard.Handler(src))
	mux.Handle("/metrics", http.NotFoundHandler())
	srv := &http.Server{Addr: fmt.Sprintf("%s:%d", primaryIP, n.hport), Handler: mux}
	go srv.ListenAndServe()
	t.Cleanup(func() { srv.Close() })
}
