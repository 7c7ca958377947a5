package security

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Issue 12, item 6: relay trust must never be wider than Postfix's for the
// same main.cf. The old default mynetworks took every interface of the
// host, ignored inet_interfaces and always added 127.0.0.0/8, so with
// inet_interfaces = 127.0.0.1 at compatibility_level 3.6 (Postfix:
// mynetworks_style = host, mynetworks = 127.0.0.1/32) a client at
// 127.0.0.2 could relay anywhere.

// defaultMynetworksInstance is a mailtee whose main.cf leaves mynetworks
// to its default, listening on 127.0.0.1 only, relaying to a sink.
func defaultMynetworksInstance(t *testing.T, extra string) (*instance, *sink) {
	t.Helper()
	sk := newSink(t)
	in := newInstance(t, fmt.Sprintf("relayhost = [127.0.0.1]:%d\n", sk.Port())+extra, nil)
	// The harness sets mynetworks = 127.0.0.0/8; this test is about its
	// default, so the line goes.
	file := filepath.Join(in.Dir, "main.cf")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cf := regexp.MustCompile(`(?m)^mynetworks\s*=.*\n`).ReplaceAllString(string(data), "")
	if err := os.WriteFile(file, []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}
	return in, sk
}

// wantMynetworks checks what `mailtee postconf -h mynetworks` prints:
// want is what Postfix's postconf prints for the same main.cf.
func wantMynetworks(t *testing.T, in *instance, want string) {
	t.Helper()
	out, err := in.Run("", "postconf", "-h", "mynetworks")
	if err != nil || strings.TrimSpace(out) != want {
		t.Errorf("postconf -h mynetworks = %q, %v; Postfix prints %s for this main.cf", out, err, want)
	}
}

// TestRelayTrustFollowsInetInterfaces is the attack: a relay from
// 127.0.0.2, which is not an address mailtee listens on, must get 554
// 5.7.1 as from Postfix; 127.0.0.1 (in mynetworks by the host style) may
// still relay. Before the fix, 127.0.0.2 relayed.
func TestRelayTrustFollowsInetInterfaces(t *testing.T) {
	in, sk := defaultMynetworksInstance(t, "compatibility_level = 3.6\n")
	wantMynetworks(t, in, "127.0.0.1/32")
	in.Start()

	c := dialRaw(t, in.Addr(), "127.0.0.2")
	c.must("EHLO attacker.example", "250 ")
	c.must("MAIL FROM:<mallory@outside.example>", "250 ")
	for i := 0; i < 3; i++ {
		rcpt := fmt.Sprintf("victim%d@elsewhere.example", i)
		if r := c.cmd("RCPT TO:<" + rcpt + ">"); !strings.HasPrefix(r, "554 5.7.1 ") || !strings.Contains(r, "Relay access denied") {
			t.Errorf("relay from 127.0.0.2 to %s: %q, want 554 5.7.1 ... Relay access denied", rcpt, r)
		}
	}
	c.cmd("QUIT")

	// Positive control: the host's own address relays, and the sink is
	// where relayed mail shows up.
	if err := sendFrom("127.0.0.1", in.Addr(), "staff@test.example", []string{"control@elsewhere.example"}, testMessage("control")); err != nil {
		t.Fatalf("relay from 127.0.0.1: %v", err)
	}
	waitUntil(t, "the control message at the next hop", slow(60*time.Second), func() bool {
		return sk.Count("control@elsewhere.example") == 1
	})
	for _, m := range sk.Messages() {
		for _, to := range m.To {
			if strings.HasPrefix(to, "victim") {
				t.Errorf("relayed from 127.0.0.2: %s", to)
			}
		}
	}
}

// At compatibility_level 0 (mynetworks_style = subnet) Postfix trusts
// lo's subnet, 127.0.0.0/8, and so does mailtee: the same main.cf gives
// the same trust in both directions.
func TestRelayTrustSubnetStyle(t *testing.T) {
	in, sk := defaultMynetworksInstance(t, "compatibility_level = 0\nrelay_domains =\n")
	wantMynetworks(t, in, "127.0.0.0/8")
	in.Start()
	if err := sendFrom("127.0.0.2", in.Addr(), "staff@test.example", []string{"subnet@elsewhere.example"}, testMessage("subnet")); err != nil {
		t.Fatalf("relay from 127.0.0.2 with mynetworks_style = subnet: %v", err)
	}
	waitUntil(t, "the message at the next hop", slow(60*time.Second), func() bool {
		return sk.Count("subnet@elsewhere.example") == 1
	})
}

// An inet_interfaces address that no interface has stops Postfix
// ("no local interface found"); mailtee refuses to start and says which
// line to change, instead of guessing a trust.
func TestRelayTrustUnknownInterface(t *testing.T) {
	in, _ := defaultMynetworksInstance(t, "inet_interfaces = 127.0.0.10\n")
	out, err := in.Run("", "check")
	if err == nil || !strings.Contains(out, "no local interface found for 127.0.0.10") {
		t.Errorf("check: %v\n%s", err, out)
	}
}
