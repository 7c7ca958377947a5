// Package e2e drives real mailtee processes on loopback: the binary built
// from this tree, a configuration written per test, real SMTP sinks
// (go-smtp servers in this process) as next hops, a DNS server
// (miekg/dns) for MX lookups, and a real SMTP client as the sender.
//
// The harness is test/internal/harness, shared with test/reliability and
// test/security; this file gives its parts the package's names and takes
// its defaults (15 s for mailtee to start, 20 s for a log line).
package e2e

import (
	"crypto/tls"
	"testing"

	"github.com/mailtee/mailtee/test/internal/harness"
)

func TestMain(m *testing.M) { harness.Main(m, "e2e") }

type (
	instance   = harness.Instance
	syncBuffer = harness.SyncBuffer
	sink       = harness.Sink
	dnsServer  = harness.DNSServer
)

var (
	newInstance = harness.NewInstance
	freePort    = harness.FreePort
	freePortOn  = harness.FreePortOn
	waitUntil   = harness.WaitUntil
	send        = harness.Send
	testMessage = harness.TestMessage
	newSink     = harness.NewSink
	newDNS      = harness.NewDNS
	testCert    = harness.TestCert
	dialRaw     = harness.DialRaw
)

// tlsInsecure accepts the test certificates.
var tlsInsecure = tls.Config{InsecureSkipVerify: true}
