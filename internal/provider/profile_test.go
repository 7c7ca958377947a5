package provider

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/ratelimit"
)

func TestNames(t *testing.T) {
	if got, want := Names(), []string{"google", "microsoft365"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Names() = %q, want %q", got, want)
	}
	for _, n := range []string{"", "none", "auto", "Google", "microsoft"} {
		if _, ok := Lookup(n); ok {
			t.Errorf("Lookup(%q) found a profile", n)
		}
	}
}

// published is what each provider publishes per mailbox (the README's
// sources): a profile's windows must stay strictly below every one of
// these over the same span.
var published = map[string][]ratelimit.Window{
	"google":       {{N: 60, Per: time.Minute}, {N: 3600, Per: time.Hour}, {N: 86400, Per: 24 * time.Hour}},
	"microsoft365": {{N: 1200, Per: time.Hour}, {N: 3600, Per: time.Hour}},
}

func TestProfilesBelowPublished(t *testing.T) {
	for _, name := range Names() {
		p, ok := Lookup(name)
		if !ok || p.Name != name {
			t.Fatalf("Lookup(%q) = %+v, %v", name, p, ok)
		}
		if p.TLSLevel != "encrypt" {
			t.Errorf("%s: TLS level %q, want encrypt", name, p.TLSLevel)
		}
		if p.Concurrency < 1 || p.RecipientLimit < 1 || p.MessagesPerConnection < 1 {
			t.Errorf("%s: concurrency %d, recipient limit %d, reuse %d: all must be set", name, p.Concurrency, p.RecipientLimit, p.MessagesPerConnection)
		}
		if len(p.RecipientRate) == 0 {
			t.Errorf("%s: no recipient rate", name)
		}
		// The most a profile lets through in any span of each published
		// window: the tightest of its windows, scaled up to that span.
		for _, pub := range published[name] {
			most := -1
			for _, w := range p.RecipientRate {
				n := w.N * int((pub.Per+w.Per-1)/w.Per)
				if most < 0 || n < most {
					most = n
				}
			}
			if most < 0 || most >= pub.N {
				t.Errorf("%s: %s lets %d through in %v; published limit %s", name, ratelimit.FormatWindows(p.RecipientRate), most, pub.Per, pub)
			}
		}
		if _, err := ratelimit.ParseWindows(ratelimit.FormatWindows(p.RecipientRate)); err != nil {
			t.Errorf("%s: recipient rate does not round-trip: %v", name, err)
		}
		if len(p.Sources) == 0 {
			t.Errorf("%s: no sources", name)
		}
		for _, s := range p.Sources {
			if s.What == "" || !strings.HasPrefix(s.URL, "https://") {
				t.Errorf("%s: bad source %+v", name, s)
			}
		}
	}
	// Microsoft: below the "warm" limit, 1,000 in a rolling hour.
	p, _ := Lookup("microsoft365")
	for _, w := range p.RecipientRate {
		if w.Per == time.Hour && w.N >= 1000 {
			t.Errorf("microsoft365: %s reaches the warm limit", w)
		}
	}
	// Microsoft refuses more than 200 recipients from one domain per
	// transaction; RFC 5321 makes every server take 100.
	if p.RecipientLimit > 200 {
		t.Errorf("microsoft365 recipient limit %d", p.RecipientLimit)
	}
	if g, _ := Lookup("google"); g.RecipientLimit > 100 {
		t.Errorf("google recipient limit %d", g.RecipientLimit)
	}
}

func TestLookupCopies(t *testing.T) {
	p, _ := Lookup("google")
	p.RecipientRate[0].N = 1e6
	p.Sources[0].URL = "changed"
	q, _ := Lookup("google")
	if q.RecipientRate[0].N == 1e6 || q.Sources[0].URL == "changed" {
		t.Error("Lookup hands out the shared profile")
	}
}
