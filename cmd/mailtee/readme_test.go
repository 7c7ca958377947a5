package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readmeBlock returns the body of the README's code block that follows
// the line containing marker.
func readmeBlock(t *testing.T, readme, marker string) string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, marker)
	if !ok {
		t.Fatalf("README has no %q", marker)
	}
	_, rest, _ = strings.Cut(rest, "```\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("README: no code block after %q", marker)
	}
	return block
}

// The README's forward-only step, applied to the seed's primary as
// written there, passes check: a new user copied it and got an error
// (a trailing "# comment" became part of transport_maps).
func TestReadmeForwardOnlyChecks(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	_, step, ok := strings.Cut(readme, "**3. Forward only.**")
	if !ok {
		t.Fatal("README has no forward-only step")
	}
	mainCf := readmeBlock(t, step, "")
	transport := readmeBlock(t, step, "with this line in")
	dir := t.TempDir()
	for _, f := range []string{"main.cf", "bcc_map_to_relay"} {
		b, err := os.ReadFile(filepath.Join("../../examples/seed/primary", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "main.cf" {
			b = append(b, mainCf...)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "transport"), []byte(transport), 0o644)
	fixed := strings.ReplaceAll(string(must(os.ReadFile(filepath.Join(dir, "main.cf")))), "/etc/postfix", dir)
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte(fixed+"alias_maps =\n"), 0o644)
	code, out, errs := mailtee(t, "", "check", "-c", dir)
	if code != exitOK {
		t.Errorf("check on the README's forward-only main.cf: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = mailtee(t, "", "postmap", "-c", dir, "-q", "students.iiit.ac.in", "hash:"+filepath.Join(dir, "transport"))
	if code != exitOK || strings.TrimSpace(out) != "smtp:aspmx.l.google.com" {
		t.Errorf("the README's transport line: exit %d, %q", code, out)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
