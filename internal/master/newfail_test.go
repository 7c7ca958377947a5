package master

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A New that fails after opening the queue (here: a certificate that does
// not load, which Check would have refused first) gives the queue and its
// lock back, so that the next New in the same process starts at once
// instead of waiting for a lock nobody holds any more.
func TestNewFailureReleasesQueue(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not a certificate\n"), 0o600)
	port := freePort(t)
	cfg := writeMainCF(t, dir, port, "", "smtpd_tls_cert_file = "+bad+"\nsmtpd_tls_key_file = "+bad+"\n")
	if _, err := New(cfg, new(syncBuffer), nil); err == nil {
		t.Fatal("New accepted a certificate that does not load")
	}
	cfg = writeMainCF(t, dir, port, "", "")
	start := time.Now()
	s, err := New(cfg, new(syncBuffer), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop(5 * time.Second)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the second New waited %v for the queue lock the failed one kept", d)
	}
}
