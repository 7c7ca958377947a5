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
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"os/exec"
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

// loopbackMainCf is the head of the main.cf of a mailtee the tests run
// on loopback: its SMTP port, the port its SMTP client connects to, the
// test's DNS server, and retries quick enough for a test.
func loopbackMainCf(port int, dns string) string {
	return fmt.Sprintf(`smtpd_port = %d
smtp_tcp_port = %d
dns_servers = %s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
`, port, port, dns)
}

// runBin runs the built mailtee with args and returns its standard
// output, standard error and exit status.
func runBin(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(harness.Bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}
