package master

import (
	"io"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/config"
	"github.com/mailtee/mailtee/internal/maillog"
	"github.com/mailtee/mailtee/internal/mastercf"
)

// smtp_connection_reuse_count_limit and smtp_connection_reuse_time_limit
// reach the SMTP client from main.cf, with Postfix's defaults (0, 300s),
// and from a master.cf smtp service's -o.
func TestConnectionReuseLimits(t *testing.T) {
	for _, tc := range []struct {
		maincf   string
		count    int
		lifetime time.Duration
	}{
		{"", 0, 300 * time.Second},
		{"smtp_connection_reuse_count_limit = 10\nsmtp_connection_reuse_time_limit = 2m\n", 10, 2 * time.Minute},
	} {
		cfg := config.Parse("/etc/postfix", "/etc/postfix/main.cf", []byte(tc.maincf))
		if d := cfg.Check(); d.HasErrors() {
			t.Fatalf("%q: %v", tc.maincf, d)
		}
		s := &Server{cfg: cfg, log: maillog.New(io.Discard, "test")}
		c := s.smtpClient(cfg, nil, "smtp")
		if c.MaxReuse != tc.count || c.MaxLifetime != tc.lifetime {
			t.Errorf("%q: MaxReuse %d, MaxLifetime %v; want %d, %v", tc.maincf, c.MaxReuse, c.MaxLifetime, tc.count, tc.lifetime)
		}
	}

	cfg := config.Parse("/etc/postfix", "/etc/postfix/main.cf", nil)
	mf, d := mastercf.Parse("/etc/postfix/master.cf", []byte("relay unix - - n - - smtp\n  -o smtp_connection_reuse_count_limit=5\n"))
	if d.HasErrors() {
		t.Fatal(d)
	}
	s := &Server{cfg: cfg, log: maillog.New(io.Discard, "test")}
	s.smtp = s.smtpClient(cfg, nil, "smtp")
	c := s.serviceClient(&mf.Services[0])
	if c == nil || c.MaxReuse != 5 || c.MaxLifetime != 300*time.Second {
		t.Errorf("relay's client %+v, want MaxReuse 5 from -o", c)
	}
}
