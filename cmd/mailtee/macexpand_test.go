package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Postfix's own test vectors for $name expansion (src/util/mac_expand.in
// of Postfix 3.7, verbatim) and mailtee's (mailtee.in, same format), each
// turned into a postconf -x query: a main.cf with the block's
// definitions and "smtpd_banner = PATTERN", then `postconf -c DIR -x -h
// smtpd_banner`. postconf-3.7.json holds what Debian's Postfix 3.7.11
// answered, so that the test runs without it; where it is installed, it
// is asked again and must still agree.
var (
	macExpandDir    = filepath.Join("..", "..", "internal", "config", "testdata", "macexpand")
	macExpandInputs = []string{"mac_expand.in", "mailtee.in"}
	macExpandGolden = filepath.Join(macExpandDir, "postconf-3.7.json")
	updateMacExpand = flag.Bool("update-macexpand", false, "rewrite "+macExpandGolden+" from the installed postconf")
)

// macExpandExceptions lists the vectors where mailtee knowingly differs
// from postconf, with why (the README repeats them).
var macExpandExceptions = map[string]string{}

type macVector struct {
	Source  string   `json:"source"` // file:line of the pattern
	Defs    []string `json:"defs"`   // main.cf lines before it
	Pattern string   `json:"pattern"`
	Status  int      `json:"status"`            // postconf's exit status
	Value   string   `json:"value"`             // its output, when 0
	Message string   `json:"message,omitempty"` // its diagnostics, when not
}

// readMacVectors reads blocks as mac_expand.c's test driver does:
// definitions up to an empty line, then patterns up to an empty line.
func readMacVectors(t *testing.T, name string) []macVector {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(macExpandDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var out []macVector
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	next := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		line++
		return sc.Text(), true
	}
	for more := true; more; {
		var defs []string
		for {
			l, ok := next()
			if !ok {
				more = false
			}
			if !ok || l == "" {
				break
			}
			defs = append(defs, l)
		}
		for more {
			l, ok := next()
			if !ok {
				more = false
			}
			if !ok || l == "" {
				break
			}
			out = append(out, macVector{Source: fmt.Sprintf("%s:%d", name, line), Defs: defs, Pattern: l})
		}
	}
	return out
}

func macMainCf(t *testing.T, v macVector) string {
	t.Helper()
	dir := t.TempDir()
	text := strings.Join(v.Defs, "\n") + "\nsmtpd_banner = " + v.Pattern + "\n"
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// An empty master.cf keeps postconf from warning that there is none.
	if err := os.WriteFile(filepath.Join(dir, "master.cf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Postfix waits and reads again a file changed less than a second ago
	// (dict_load_file_xt() in src/util/dict.c): 2 s per vector.
	old := time.Now().Add(-time.Hour)
	for _, f := range []string{"main.cf", "master.cf"} {
		if err := os.Chtimes(filepath.Join(dir, f), old, old); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// realPostconf returns postconf's answer to each vector, or nil when
// Postfix 3.7 is not installed. They are asked at once: each error costs a
// second, which msg_fatal() sleeps before postconf exits.
func realPostconf(t *testing.T, vectors []macVector) []macVector {
	t.Helper()
	path := postconf37()
	if path == "" {
		return nil
	}
	out := make([]macVector, len(vectors))
	errs := make([]error, len(vectors))
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i, v := range vectors {
		dir := macMainCf(t, v)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			out[i], errs[i] = askPostconf(path, dir, v)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func askPostconf(path, dir string, v macVector) (macVector, error) {
	cmd := exec.Command(path, "-c", dir, "-x", "-h", "smtpd_banner")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	v.Status, v.Value, v.Message = 0, strings.TrimSuffix(stdout.String(), "\n"), ""
	if ee, ok := err.(*exec.ExitError); ok {
		v.Status = ee.ExitCode()
	} else if err != nil {
		return v, err
	}
	if v.Status != 0 {
		v.Value = ""
		// What it said about this value, each line once (postconf
		// warns once when it scans main.cf, again when it expands).
		var said []string
		for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			l = strings.TrimPrefix(strings.ReplaceAll(l, dir, "DIR"), path+": ")
			if !strings.Contains(l, "unused parameter") && !strings.Contains(l, "undefined parameter") && !slices.Contains(said, l) {
				said = append(said, l)
			}
		}
		v.Message = strings.Join(said, " | ")
	}
	return v, nil
}

// postconf37 returns the path of Postfix 3.7's postconf, or "".
var postconf37 = sync.OnceValue(func() string {
	path, err := exec.LookPath("postconf")
	if err != nil {
		return ""
	}
	if out, err := exec.Command(path, "-d", "-h", "mail_version").Output(); err != nil || !strings.HasPrefix(string(out), "3.7.") {
		return ""
	}
	return path
})

func TestPostconfMacExpand(t *testing.T) {
	var vectors []macVector
	for _, in := range macExpandInputs {
		vectors = append(vectors, readMacVectors(t, in)...)
	}
	real := realPostconf(t, vectors)
	if *updateMacExpand {
		if real == nil {
			t.Fatal("-update-macexpand needs Postfix 3.7's postconf (apt-get install postfix)")
		}
		var data bytes.Buffer
		enc := json.NewEncoder(&data)
		enc.SetEscapeHTML(false) // the messages quote ">>>" as Postfix does
		enc.SetIndent("", "\t")
		if err := enc.Encode(real); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(macExpandGolden, data.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(macExpandGolden)
	if err != nil {
		t.Fatal(err)
	}
	var golden []macVector
	if err := json.Unmarshal(data, &golden); err != nil {
		t.Fatalf("%s: %v", macExpandGolden, err)
	}
	if len(golden) != len(vectors) {
		t.Fatalf("%s has %d vectors, the inputs %d: run go test -run TestPostconfMacExpand -update-macexpand", macExpandGolden, len(golden), len(vectors))
	}
	agreed, exceptions := 0, 0
	for i, g := range golden {
		v := vectors[i]
		if g.Pattern != v.Pattern || strings.Join(g.Defs, "\n") != strings.Join(v.Defs, "\n") {
			t.Fatalf("%s: golden vector %d is %q, the input %q: run with -update-macexpand", macExpandGolden, i, g.Pattern, v.Pattern)
		}
		if real != nil {
			if r := real[i]; r.Status != g.Status || r.Value != g.Value {
				t.Errorf("%s: %q: the installed postconf says status %d %q, the golden data status %d %q", g.Source, g.Pattern, r.Status, r.Value, g.Status, g.Value)
			}
		}
		dir := macMainCf(t, v)
		var stdout, stderr bytes.Buffer
		code := run([]string{"postconf", "-c", dir, "-x", "-h", "smtpd_banner"}, &stdout, &stderr)
		got := strings.TrimSuffix(stdout.String(), "\n")
		ok := code == g.Status && (g.Status != 0 || got == g.Value)
		if why, known := macExpandExceptions[g.Pattern]; known {
			exceptions++
			if ok {
				t.Errorf("%s: %q is listed as an exception (%s) but now agrees: remove it", g.Source, g.Pattern, why)
			}
			continue
		}
		if !ok {
			t.Errorf("%s: smtpd_banner = %s\n\tpostconf: status %d %q %s\n\tmailtee:  status %d %q %s",
				g.Source, g.Pattern, g.Status, g.Value, g.Message, code, got, strings.TrimSpace(stderr.String()))
			continue
		}
		agreed++
	}
	t.Logf("%d vectors: %d agree with postconf 3.7, %d listed exceptions; %d also asked of the installed postconf", len(golden), agreed, exceptions, len(real))
}
