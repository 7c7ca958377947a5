package web

import (
	"crypto/tls"
	"os"
	"sync"
	"time"
)

// certFiles serves metrics_tls_cert_file and metrics_tls_key_file and
// picks up a renewed pair (certbot, an ACME client) without a restart:
// at a handshake, at most every checkEvery, it looks at the files'
// modification times and loads them again when they changed. A pair
// that does not load (caught between the two writes) leaves the old
// one in use; it is tried again at the next check.
type certFiles struct {
	cert, key string
	logf      func(format string, args ...any)

	mu      sync.Mutex
	pair    *tls.Certificate
	stamp   [2]time.Time
	checked time.Time
}

// checkEvery is a variable for the tests.
var checkEvery = 30 * time.Second

func loadCertFiles(cert, key string, logf func(string, ...any)) (*certFiles, error) {
	c := &certFiles{cert: cert, key: key, logf: logf}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	c.pair, c.stamp, c.checked = &pair, c.stamps(), time.Now()
	return c, nil
}

func (c *certFiles) stamps() [2]time.Time {
	var out [2]time.Time
	for i, f := range []string{c.cert, c.key} {
		if st, err := os.Stat(f); err == nil {
			out[i] = st.ModTime()
		}
	}
	return out
}

func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= checkEvery {
		c.checked = now
		if st := c.stamps(); st != c.stamp {
			pair, err := tls.LoadX509KeyPair(c.cert, c.key)
			if err != nil {
				if c.logf != nil {
					c.logf("metrics_tls_cert_file %s changed but does not load: %v; serving the previous certificate", c.cert, err)
				}
			} else {
				c.pair, c.stamp = &pair, st
			}
		}
	}
	return c.pair, nil
}
