package asuser

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/deliver"
	"github.com/mailtee/mailtee/internal/maildir"
)

// What a delivery costs with the recipient's privileges, against the
// same Maildir write in the server's own process (as root, before):
//
//	go test -run '^$' -bench Maildir -benchtime 2000x ./internal/asuser/
//
// Both write and fsync each message and share fsyncs of new/ between
// the concurrent deliveries (-cpu sets how many run at once).
func BenchmarkMaildirInProcess(b *testing.B) {
	benchMaildir(b, func(dir string, msg *deliver.Message) error {
		return maildir.Deliver(dir, msg, "rcpt@example.com")
	})
}

func BenchmarkMaildirHelper(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	exe, _ := os.Executable()
	p := NewPool(Options{Path: exe, Args: []string{helperArg}})
	defer p.Close()
	c := Cred{UID: 65534, GID: 65534}
	benchMaildir(b, func(dir string, msg *deliver.Message) error {
		return p.Maildir(context.Background(), c, dir, msg, "rcpt@example.com")
	})
}

func benchMaildir(b *testing.B, deliverOne func(dir string, msg *deliver.Message) error) {
	base := b.TempDir()
	os.Chmod(filepath.Dir(base), 0o755)
	os.Chmod(base, 0o755)
	box := filepath.Join(base, "box")
	os.Mkdir(box, 0o700)
	os.Chown(box, 65534, 65534)
	msg := message("Q", "Subject: bench\r\n\r\n"+strings.Repeat("2 KB of body, as bench/compare.sh sends.\r\n", 48))
	b.SetBytes(2048)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := deliverOne(box+"/", msg); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
