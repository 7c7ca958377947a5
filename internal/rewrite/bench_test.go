package rewrite

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maps"
)

// hashTable writes n lines made by line(i) and opens them as a hash:
// table, as main.cf would name it.
func hashTable(b *testing.B, name string, n int, line func(i int) string) maps.Table {
	b.Helper()
	p := filepath.Join(b.TempDir(), name)
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := 0; i < n; i++ {
		fmt.Fprintln(w, line(i))
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	t, _, err := maps.Open("hash:" + p)
	if err != nil {
		b.Fatal(err)
	}
	return t
}

// BenchmarkEnvelope rewrites a 10-recipient envelope on a primary with
// 1,000-entry virtual_alias_maps and recipient_bcc_maps (the seed's
// dual-delivery copy per user), masquerading and always_bcc.
func BenchmarkEnvelope(b *testing.B) {
	o := base()
	o.Myorigin = "students.example.org"
	o.IsLocal = func(d string) bool { return d == "students.example.org" }
	o.VirtualAliases = hashTable(b, "virtual", 1000, func(i int) string {
		return fmt.Sprintf("alias%d@students.example.org\tuser%d@students.example.org", i, i)
	})
	o.RecipientBCC = hashTable(b, "bcc", 1000, func(i int) string {
		return fmt.Sprintf("user%d:\tuser%d@relay.students.example.org", i, i)
	})
	o.MasqueradeDomains = []string{"students.example.org"}
	o.AlwaysBCC = "journal@archive.example.net"
	r := New(o)

	var rc []envelope.Rcpt
	for i := 0; i < 10; i++ {
		a := fmt.Sprintf("user%d@students.example.org", i*97)
		if i%2 == 1 {
			a = fmt.Sprintf("alias%d@students.example.org", i*89)
		}
		rc = append(rc, envelope.Rcpt{Addr: a, Orig: a})
	}
	rc = append(rc[:9], envelope.Rcpt{Addr: "someone@gmail.example", Orig: "someone@gmail.example"})
	env := &envelope.Envelope{From: "sender@host.students.example.org", Rcpts: rc}
	ctx := context.Background()
	out, err := r.Envelope(ctx, env)
	if err != nil {
		b.Fatal(err)
	}
	// 10 recipients: 5 users with a copy each, 4 aliases of users (no
	// copy: recipient_bcc_maps sees the alias, before virtual aliasing)
	// and a remote address; and the journal copy.
	if len(out.Rcpts) != 10+5+1 {
		b.Fatalf("got %d recipients: %v", len(out.Rcpts), show(out.Rcpts))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.Envelope(ctx, env); err != nil {
			b.Fatal(err)
		}
	}
}
