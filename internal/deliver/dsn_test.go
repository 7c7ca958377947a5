package deliver

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// DSN parameters go out with MAIL and RCPT to a server that offers DSN,
// pipelined or not, as smtp(8) sends them; malformed ones are left out,
// and a server without DSN gets none.
func TestDSNParameters(t *testing.T) {
	for _, c := range []struct {
		name string
		caps []string
		want []string
	}{
		{"one at a time", []string{"DSN"}, []string{
			"MAIL FROM:<sender@example.org> RET=HDRS ENVID=env+2B42",
			"RCPT TO:<a@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=RFC822;orig+2Ba@example.com",
			"RCPT TO:<b@example.com> NOTIFY=NEVER",
			"RCPT TO:<c@example.com>",
		}},
		{"pipelined", []string{"PIPELINING", "DSN"}, []string{
			"MAIL FROM:<sender@example.org> RET=HDRS ENVID=env+2B42",
			"RCPT TO:<a@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=RFC822;orig+2Ba@example.com",
			"RCPT TO:<b@example.com> NOTIFY=NEVER",
			"RCPT TO:<c@example.com>",
		}},
		{"no DSN offered", []string{"PIPELINING"}, []string{
			"MAIL FROM:<sender@example.org>",
			"RCPT TO:<a@example.com>",
			"RCPT TO:<b@example.com>",
			"RCPT TO:<c@example.com>",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := make(chan []string, 1)
			pipelined := c.caps[0] == "PIPELINING"
			port := scriptServer(t, c.caps, func(r *bufio.Reader, conn net.Conn) {
				var cmds []string
				for i := 0; i < 5; i++ { // MAIL, 3 RCPT, DATA
					line := readCommand(t, r, conn, 2*time.Second)
					cmds = append(cmds, line)
					if !pipelined {
						if strings.HasPrefix(line, "DATA") {
							conn.Write([]byte("354 go on\r\n"))
						} else {
							conn.Write([]byte("250 2.1.0 Ok\r\n"))
						}
					}
				}
				if pipelined {
					conn.Write([]byte("250 Ok\r\n250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go on\r\n"))
				}
				got <- cmds[:4]
				for {
					if line := readCommand(t, r, conn, 5*time.Second); line == "." || line == "" {
						break
					}
				}
				conn.Write([]byte("250 2.0.0 Ok: queued as X1\r\n"))
				readCommand(t, r, conn, 5*time.Second)
				conn.Write([]byte("221 bye\r\n"))
			})
			cl := testClient(port)
			msg := testMessage(body)
			msg.Ret, msg.EnvID = "HDRS", "env+42"
			msg.RcptDSN = []RcptDSN{
				{Notify: "SUCCESS,FAILURE", ORcpt: "rfc822;orig+a@example.com"},
				{Notify: "NEVER", ORcpt: "rfc822;bad\x01orcpt"},
				{Notify: "NEVER,SUCCESS"}, // malformed: left out
			}
			res := cl.Deliver(context.Background(), "[127.0.0.1]:"+port, msg, []string{"a@example.com", "b@example.com", "c@example.com"})
			cmds := <-got
			for i := range cmds {
				cmds[i] = strings.ReplaceAll(cmds[i], " BODY=8BITMIME", "")
				if j := strings.Index(cmds[i], " SIZE="); j >= 0 {
					k := strings.IndexByte(cmds[i][j+1:], ' ')
					if k < 0 {
						cmds[i] = cmds[i][:j]
					} else {
						cmds[i] = cmds[i][:j] + cmds[i][j+1+k:]
					}
				}
			}
			if strings.Join(cmds, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("commands:\n%s\nwant\n%s", strings.Join(cmds, "\n"), strings.Join(c.want, "\n"))
			}
			for _, r := range res {
				delivered(t, r)
			}
		})
	}
}
