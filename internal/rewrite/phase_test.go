package rewrite

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mailtee/mailtee/internal/envelope"
)

func showMigration(rs []envelope.Rcpt) []string {
	out := show(rs)
	for i, r := range rs {
		if r.Migration != "" {
			out[i] += " [" + r.Migration + "]"
		}
	}
	return out
}

// The migration phase of each recipient recipient_bcc_maps copies:
// dual adds the copy, off none, forward sends only to the copy's
// address, as a real delivery (no +copy: the sender hears of its
// failure). Recipients without a copy are never affected; sender_bcc_maps
// and always_bcc are not the migration's copies.
func TestPhases(t *testing.T) {
	o := base()
	o.RecipientBCC = inline(t, "u1@example.com", "u1@relay.example", "u2@example.com", "u2@relay.example", "u3@example.com", "u3@relay.example")
	o.SenderBCC = inline(t, "joe@example.com", "joe-sent@example.net")
	phases := map[string]string{"u1@example.com": "off", "u2@example.com": "forward", "u4@example.com": "forward"}
	var asked []string
	o.Phase = func(_ context.Context, addr string) (string, error) {
		asked = append(asked, addr)
		if p, ok := phases[addr]; ok {
			return p, nil
		}
		return "dual", nil
	}
	env, err := New(o).Envelope(context.Background(), &envelope.Envelope{From: "joe", Rcpts: rcpts("u1@example.com", "u2@example.com", "u3@example.com", "u4@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"u1@example.com <- u1@example.com",
		"u2@relay.example <- u2@example.com [forward]",
		"u3@example.com <- u3@example.com",
		"u4@example.com <- u4@example.com",
		"u3@relay.example <- u3@example.com +copy [copy]",
		"joe-sent@example.net <- joe@example.com +copy",
	}
	if g := showMigration(env.Rcpts); !reflect.DeepEqual(g, want) {
		t.Errorf("got  %q\nwant %q", g, want)
	}
	// u4 has no copy: its phase is never asked.
	if strings.Contains(strings.Join(asked, " "), "u4") {
		t.Errorf("phase asked for a recipient without a copy: %v", asked)
	}
}

// A phase table that cannot answer refuses the message for now, as any
// lookup failure does: never a guess.
func TestPhaseLookupError(t *testing.T) {
	o := base()
	o.RecipientBCC = inline(t, "u1@example.com", "u1@relay.example")
	o.Phase = func(context.Context, string) (string, error) { return "", errors.New("down") }
	_, err := New(o).Envelope(context.Background(), &envelope.Envelope{From: "joe", Rcpts: rcpts("u1@example.com")})
	var re *Error
	if !errors.As(err, &re) || re.Status != "4.3.0" {
		t.Errorf("err %v, want a 4.3.0 *Error", err)
	}
}

// A copy to the very address that is delivered here (one box: u1 ->
// u1@example.com) is kept apart from it (it leaves by copy_transport, or
// waits for one); without ApartDomain the copy is dropped as its
// duplicate.
func TestCopiesApart(t *testing.T) {
	for _, apart := range []bool{false, true} {
		o := base()
		o.RecipientBCC = inline(t, "u1@example.com", "u1@example.com")
		if apart {
			o.ApartDomain = o.IsLocal
		}
		env, err := New(o).Envelope(context.Background(), &envelope.Envelope{From: "joe", Rcpts: rcpts("u1@example.com")})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"u1@example.com <- u1@example.com"}
		if apart {
			want = append(want, "u1@example.com <- u1@example.com +copy [copy]")
		}
		if g := showMigration(env.Rcpts); !reflect.DeepEqual(g, want) {
			t.Errorf("apart %v: got %q, want %q", apart, g, want)
		}
	}
}

// A copy to an address that is not delivered here
// (u1 -> u1@students.example, a domain the provider hosts) and that the
// message also has as a recipient takes the copy's route and the
// recipient's, both to the provider's mailbox: one is a duplicate, and
// the copy is dropped as it is without copy_transport. Only an address
// in a local domain is kept apart from its copy.
func TestCopiesApartOnlyForLocalAddresses(t *testing.T) {
	o := base()
	o.RecipientBCC = inline(t, "u1@example.com", "u1@students.example")
	o.ApartDomain = o.IsLocal
	env, err := New(o).Envelope(context.Background(), &envelope.Envelope{From: "joe", Rcpts: rcpts("u1@example.com", "u1@students.example")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"u1@example.com <- u1@example.com", "u1@students.example <- u1@students.example"}
	if g := showMigration(env.Rcpts); !reflect.DeepEqual(g, want) {
		t.Errorf("got %q, want %q", g, want)
	}
}

// One box, copy_transport: two recipients that copy to the same address
// delivered here, one in the forward phase and one in dual
// (u1@example.com by its own phase entry, u1@mail.example.com by the
// default): the forward and the copy both leave by copy_transport, to
// the same mailbox at the provider, so they are one recipient (the
// forward, a real delivery), kept apart only from the local recipient.
func TestForwardAndCopyToOneAddressAreOne(t *testing.T) {
	o := base()
	o.RecipientBCC = inline(t, "u1@example.com", "box@example.com", "u1@mail.example.com", "box@example.com")
	o.ApartDomain = o.IsLocal
	o.Phase = func(_ context.Context, addr string) (string, error) {
		if addr == "u1@example.com" {
			return "forward", nil
		}
		return "dual", nil
	}
	env, err := New(o).Envelope(context.Background(), &envelope.Envelope{From: "joe", Rcpts: rcpts("u1@example.com", "u1@mail.example.com", "box@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"box@example.com <- u1@example.com [forward]",
		"u1@mail.example.com <- u1@mail.example.com",
		"box@example.com <- box@example.com",
	}
	if g := showMigration(env.Rcpts); !reflect.DeepEqual(g, want) {
		t.Errorf("got  %q\nwant %q", g, want)
	}
}
