package reliability

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtee/mailtee/test/internal/harness"
)

const refusedLine = "reload refused, keeping the running configuration"

// TestReloadRefusesBrokenConfig: SIGHUP and `mailtee reload -c DIR` with a
// broken main.cf (an unknown parameter) and then with a broken table (a
// regexp with a look-ahead, which RE2 cannot express). Each time the
// server keeps running, logs the refusal with the reason, `mailtee reload`
// exits non-zero with the reason, and mail keeps flowing, also during the
// reloads. A valid configuration is then accepted again.
func TestReloadRefusesBrokenConfig(t *testing.T) {
	sk := newSink(t, "", nil)
	goodTable := fmt.Sprintf("/@far\\.example$/ smtp:[127.0.0.1]:%d\n", sk.Port())
	goodPcre := fmt.Sprintf("/@other\\.example$/ smtp:[127.0.0.1]:%d\n", sk.Port())
	in := newInstance(t, "transport_maps = regexp:$config_directory/transport.re, pcre:$config_directory/transport.pcre\n", map[string]string{
		"transport.re":   goodTable,
		"transport.pcre": goodPcre,
	})
	// config_directory may not be what $config_directory expands to in
	// every setup: name the table by its path.
	goodMain := strings.ReplaceAll(in.readMainCf(), "$config_directory", in.Dir)
	in.writeMainCf(goodMain)
	in.Start()
	pid := in.Pid()

	// Background mail while the configuration is being broken and
	// reloaded: every message must be acknowledged and delivered.
	var (
		mu      sync.Mutex
		sent    []string
		sendErr []string
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 2000; i++ { // bounded; stopped long before
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			rcpt := fmt.Sprintf("bg%d@far.example", i)
			err := send(in.Addr(), "s@test.example", []string{rcpt}, testMessage(rcpt))
			mu.Lock()
			if err != nil {
				sendErr = append(sendErr, fmt.Sprintf("%s: %v", rcpt, err))
			} else {
				sent = append(sent, rcpt)
			}
			mu.Unlock()
		}
	}()

	mailFlows := func(step string) {
		t.Helper()
		rcpt := "probe-" + step + "@far.example"
		if err := send(in.Addr(), "s@test.example", []string{rcpt}, testMessage(rcpt)); err != nil {
			t.Fatalf("%s: send: %v\nlog:\n%s", step, err, in.Log.String())
		}
		waitUntil(t, step+": delivery of "+rcpt, 30*time.Second, func() bool { return sk.Count(rcpt) > 0 })
	}
	stillRunning := func(step string) {
		t.Helper()
		if !in.Running() || in.Pid() != pid {
			t.Fatalf("%s: mailtee is not running any more (%v); log:\n%s", step, in.ExitErr(), in.Log.String())
		}
	}
	// refusal checks one reload, by SIGHUP or by `mailtee reload`: the
	// server logs a refusal naming the reason, and the command fails.
	refusal := func(step, reason string) (sighupLine string) {
		t.Helper()
		mark := in.Log.Len()
		if err := in.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		line := waitLine(t, in, mark, refusedLine, 20*time.Second)
		sighupLine = line
		t.Logf("%s, SIGHUP: %s", step, line)
		if !strings.Contains(line, reason) {
			t.Errorf("%s: SIGHUP refusal does not give the reason (%q): %s", step, reason, line)
		}
		stillRunning(step + " after SIGHUP")
		mailFlows(step + "-sighup")

		mark = in.Log.Len()
		out, err := in.Run("", "reload")
		t.Logf("%s, mailtee reload: exit %d: %s", step, exitCode(err), strings.TrimSpace(out))
		if err == nil {
			t.Errorf("%s: mailtee reload exited 0 on a broken configuration: %s", step, out)
		}
		if !strings.Contains(out, reason) {
			t.Errorf("%s: mailtee reload does not give the reason (%q): %s", step, reason, out)
		}
		line = waitLine(t, in, mark, refusedLine, 20*time.Second)
		if !strings.Contains(line, reason) {
			t.Errorf("%s: server refusal after mailtee reload does not give the reason (%q): %s", step, reason, line)
		}
		stillRunning(step + " after mailtee reload")
		mailFlows(step + "-reload")
		return sighupLine
	}
	accepted := func(step string) {
		t.Helper()
		mark := in.Log.Len()
		if err := in.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		line := waitLine(t, in, mark, "reload", 20*time.Second)
		if strings.Contains(line, refusedLine) {
			t.Errorf("%s: valid configuration refused: %s", step, line)
		}
		if out, err := in.Run("", "reload"); err != nil {
			t.Errorf("%s: mailtee reload on a valid configuration: %v: %s", step, err, out)
		}
		stillRunning(step)
		mailFlows(step)
	}

	mailFlows("initial")

	// 1. main.cf with an unknown parameter.
	in.writeMainCf(goodMain + "no_such_parameter_zz = yes\n")
	refusal("unknown-parameter", "no_such_parameter_zz")
	in.writeMainCf(goodMain)
	accepted("main.cf-restored")

	// 1b. Two problems: each has its own log line (one line would show
	// the newline between them as '?' and hide the second).
	mark := in.Log.Len()
	in.writeMainCf(goodMain + "no_such_parameter_aa = yes\nno_such_parameter_bb = yes\n")
	if err := in.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLine(t, in, mark, "no_such_parameter_bb", 20*time.Second)
	for name, other := range map[string]string{"no_such_parameter_aa": "_bb", "no_such_parameter_bb": "_aa"} {
		if l := waitLine(t, in, mark, name, time.Second); !strings.Contains(l, refusedLine) || strings.Contains(l, other) {
			t.Errorf("refusal of %s is not a line of its own: %q", name, l)
		}
	}
	in.writeMainCf(goodMain)
	accepted("main.cf-restored-again")

	// 2. A regexp table with a look-ahead (a load error under RE2).
	in.WriteFile("transport.re", fmt.Sprintf("/^(?!nobody@).*@far\\.example$/ smtp:[127.0.0.1]:%d\n", sk.Port()))
	refusal("lookahead-table", "transport.re")
	in.WriteFile("transport.re", goodTable)
	accepted("table-restored")

	// 3. The same look-ahead in a pcre table: there mailtee names it.
	in.WriteFile("transport.pcre", fmt.Sprintf("/^(?!nobody@).*@other\\.example$/ smtp:[127.0.0.1]:%d\n", sk.Port()))
	if l := refusal("lookahead-pcre", "transport.pcre"); !strings.Contains(l, "lookahead") {
		t.Errorf("pcre refusal does not say look-ahead is the problem: %s", l)
	}
	in.WriteFile("transport.pcre", goodPcre)
	accepted("pcre-restored")

	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(sendErr) > 0 {
		t.Errorf("%d background submissions failed during reloads, e.g. %s", len(sendErr), sendErr[0])
	}
	waitUntil(t, fmt.Sprintf("delivery of %d background messages", len(sent)), 60*time.Second, func() bool {
		for _, r := range sent {
			if sk.Count(r) == 0 {
				return false
			}
		}
		return true
	})
	t.Logf("background messages during reloads: %d sent and delivered", len(sent))
	in.Stop()
	if t.Failed() {
		t.Logf("log:\n%s", in.Log.String())
	}
}

// waitLine waits for a log line, written after offset mark, that contains
// s, and returns it.
func waitLine(t *testing.T, in *instance, mark int, s string, d time.Duration) string {
	t.Helper()
	var found string
	waitUntil(t, fmt.Sprintf("%q in the log", s), d, func() bool {
		for _, l := range strings.Split(in.Log.Since(mark), "\n") {
			if strings.Contains(l, s) {
				found = l
				return true
			}
		}
		return false
	})
	return found
}

// TestSignalRightAfterStart: once mailtee accepts SMTP connections, a
// SIGHUP (a reload, as an init system or `mailtee reload` may send at any
// time) must not kill it. The harness's Start waits for more than the
// listener; here the signal goes as soon as the port answers.
func TestSignalRightAfterStart(t *testing.T) {
	in := newInstance(t, "", nil)
	const rounds = 30
	deaths := 0
	var example string
	for i := 0; i < rounds; i++ {
		mark := in.Log.Len()
		cmd := exec.Command(harness.Bin, "serve", "-c", in.Dir)
		cmd.Stdout, cmd.Stderr = in.Log, in.Log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		listening := false
		for t0 := time.Now(); time.Since(t0) < 30*time.Second; {
			c, err := net.DialTimeout("tcp", in.Addr(), time.Second)
			if err == nil {
				c.Close()
				listening = true
				break
			}
			time.Sleep(time.Millisecond)
		}
		if !listening {
			cmd.Process.Kill()
			<-done
			t.Fatalf("round %d: mailtee did not listen; log:\n%s", i, in.Log.Since(mark))
		}
		cmd.Process.Signal(syscall.SIGHUP)
		select {
		case err := <-done:
			deaths++
			if example == "" {
				example = fmt.Sprintf("round %d: %v; log:\n%s", i, err, in.Log.Since(mark))
			}
			continue
		case <-time.After(300 * time.Millisecond):
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("round %d: exit after SIGTERM: %v", i, err)
			}
		case <-time.After(40 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("round %d: no exit after SIGTERM", i)
		}
	}
	t.Logf("SIGHUP as soon as the port answers: %d of %d servers died", deaths, rounds)
	if deaths > 0 {
		t.Errorf("%d of %d servers died of a SIGHUP sent once they accepted connections (signal handlers installed after the listeners?), e.g. %s", deaths, rounds, example)
	}
}
