package preflight

import (
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A hostile server that answers with an endless multi-line reply (or a
// line without end) must not make preflight read, and keep in memory,
// all it sends until the command timeout: the reply is refused once it
// is longer than any real server's.
func TestReplyEndless(t *testing.T) {
	for _, c := range []struct{ name, chunk string }{
		{"lines", "220-" + strings.Repeat("x", 1000) + "\r\n"},
		{"one line", strings.Repeat("x", 1000)},
	} {
		t.Run(c.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var sent atomic.Int64
			const most = 64 << 20 // the fake stops there, so a failing run ends
			go func() {
				c2, err := ln.Accept()
				if err != nil {
					return
				}
				defer c2.Close()
				b := []byte(strings.Repeat(c.chunk, 64))
				for sent.Load() < most {
					n, err := c2.Write(b)
					sent.Add(int64(n))
					if err != nil {
						return
					}
				}
				time.Sleep(30 * time.Second)
			}()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			s := newSession(conn, "hostile", netip.MustParseAddrPort(ln.Addr().String()), 20*time.Second)
			r, err := s.reply()
			if err == nil {
				t.Fatalf("an endless reply was read: code %d, %d bytes", r.Code, len(r.Text))
			}
			if e := err.Error(); !strings.Contains(e, "too long") || len(e) > 1000 {
				t.Errorf("error %.200q (%d bytes): want a short one saying the reply is too long", e, len(e))
			}
			if n := sent.Load(); n >= most {
				t.Errorf("the server sent %d bytes and preflight read them all", n)
			}
		})
	}
}
