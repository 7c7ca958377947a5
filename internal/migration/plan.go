package migration

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/maps"
)

// PlanOptions is what Plan needs besides the settings: the tables and
// routing of main.cf, opened by the caller (internal/master).
type PlanOptions struct {
	Tables *Tables
	// RecipientBCC is recipient_bcc_maps (nil: none): its users have a
	// phase too, decided when their mail is accepted.
	RecipientBCC maps.Table
	// Phase is the dual_delivery_phase to compare with; "" compares the
	// settings with themselves (what each user's phase is now).
	Phase    string
	Myorigin string // for table keys that are a bare user name
	AddrOpts maps.AddressOptions
	// Route is where a recipient goes, copy_transport included.
	Route func(ctx context.Context, r envelope.Rcpt) (envelope.Hop, error)
}

// Change is one user of the copy maps, in the phase it is in now and in
// the one it would be in.
type Change struct {
	Map     string // mailbox_bcc_maps or recipient_bcc_maps
	Key     string // as in the table
	Addr    string // the user's address ("" for an @domain key)
	Copies  []string
	Now     string
	Then    string
	Own     bool // its own dual_delivery_phase_maps entry: the default does not move it
	Mailbox string
	CopyTo  []string // each copy with its route
}

// Changed says whether the user's mail would go elsewhere.
func (c Change) Changed() bool { return c.Now != c.Then }

// Plan lists the users of the listable copy maps with their phase now
// and under o.Phase, and where their mail goes in each. skipped names
// the tables that cannot be listed (regexp, pcre, ...), whose users are
// not in the plan.
func Plan(ctx context.Context, o PlanOptions) (changes []Change, skipped []string, err error) {
	type src struct {
		name  string
		t     maps.Table
		specs []string
	}
	for _, s := range []src{
		{"mailbox_bcc_maps", o.Tables.MailboxBCC, o.Tables.Settings.MailboxBCC},
		{"recipient_bcc_maps", o.RecipientBCC, o.Tables.Settings.RecipientBCC},
	} {
		entries, unlisted := listEntries(s.t, s.specs)
		for _, u := range unlisted {
			skipped = append(skipped, s.name+": "+u)
		}
		for _, e := range entries {
			c, err := o.change(ctx, s.name, e)
			if err != nil {
				return nil, nil, err
			}
			changes = append(changes, c)
		}
	}
	sort.SliceStable(changes, func(i, j int) bool { return changes[i].Key < changes[j].Key })
	return changes, skipped, nil
}

func (o PlanOptions) change(ctx context.Context, mapName string, e maps.Entry) (Change, error) {
	c := Change{Map: mapName, Key: e.Key, Copies: splitList(e.Value)}
	switch {
	case strings.HasPrefix(e.Key, "@"):
	case strings.Contains(e.Key, "@"):
		c.Addr = e.Key
	default:
		c.Addr = e.Key + "@" + o.Myorigin
	}
	probe := c.Addr
	if probe == "" {
		probe = "postmaster" + e.Key // an @domain key: any user of it
	}
	var err error
	if c.Now, err = o.Tables.Phase(ctx, probe, o.AddrOpts); err != nil {
		return c, err
	}
	if o.Tables.PhaseMaps != nil {
		if _, c.Own, err = maps.LookupAddress(ctx, o.Tables.PhaseMaps, probe, o.AddrOpts); err != nil {
			return c, err
		}
	}
	c.Then = c.Now
	if o.Phase != "" && !c.Own {
		c.Then = o.Phase
	}
	if o.Route != nil {
		c.Mailbox = o.hop(ctx, envelope.Rcpt{Addr: probe})
		for _, a := range c.Copies {
			c.CopyTo = append(c.CopyTo, a+" via "+o.hop(ctx, envelope.Rcpt{Addr: a, Migration: envelope.MigrationCopy, Copy: true}))
		}
	}
	return c, nil
}

func (o PlanOptions) hop(ctx context.Context, r envelope.Rcpt) string {
	h, err := o.Route(ctx, r)
	if err != nil {
		return "(no route: " + err.Error() + ")"
	}
	return h.String()
}

// Where says where the user's mail goes in phase p.
func (c Change) Where(p string) string {
	copies := strings.Join(c.CopyTo, ", ")
	if copies == "" {
		copies = strings.Join(c.Copies, ", ")
	}
	box := "mailbox"
	if c.Mailbox != "" {
		box += " (" + c.Mailbox + ")"
	}
	switch p {
	case Off:
		return box + " only"
	case Forward:
		return copies + " only, no mailbox"
	}
	return box + " + copy to " + copies
}

// WriteDiff prints the plan: the users whose mail would go elsewhere,
// each with where it goes now and then, and a count of the others. It
// returns how many change.
func WriteDiff(w io.Writer, from, to string, changes []Change, skipped []string) int {
	fmt.Fprintf(w, "dual_delivery_phase: %s -> %s (nothing is changed: edit main.cf and run mailtee reload to switch)\n\n", from, to)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tMAP\tNOW\tTHEN\tMAIL GOES NOW\tMAIL WOULD GO")
	n, own := 0, 0
	for _, c := range changes {
		if c.Own {
			own++
		}
		if !c.Changed() {
			continue
		}
		n++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Key, c.Map, c.Now, c.Then, c.Where(c.Now), c.Where(c.Then))
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d of %d users would change", n, len(changes))
	if own > 0 {
		fmt.Fprintf(w, "; %d keep the phase dual_delivery_phase_maps gives them", own)
	}
	fmt.Fprintln(w, "; users not in the copy maps are never affected.")
	fmt.Fprintln(w, "Mail queued before the switch is finished under the settings it was accepted with.")
	for _, s := range skipped {
		fmt.Fprintf(w, "not listed (its users cannot be enumerated): %s\n", s)
	}
	return n
}

// WriteShow prints every user of the copy maps with its phase and where
// its mail goes now.
func WriteShow(w io.Writer, phase string, changes []Change, skipped []string) {
	fmt.Fprintf(w, "dual_delivery_phase = %s\n\n", phase)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tMAP\tPHASE\tMAIL GOES")
	for _, c := range changes {
		p := c.Now
		if c.Own {
			p += " (own)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Key, c.Map, p, c.Where(c.Now))
	}
	tw.Flush()
	for _, s := range skipped {
		fmt.Fprintf(w, "not listed (its users cannot be enumerated): %s\n", s)
	}
}

// listEntries returns the entries of the listable tables in t, and
// names (by specs, the tables' names in order) those that are not.
func listEntries(t maps.Table, specs []string) (entries []maps.Entry, unlisted []string) {
	l, ok := t.(maps.List)
	if !ok {
		l = maps.List{t}
	}
	for i, e := range l {
		name := fmt.Sprintf("table %d", i+1)
		if len(specs) == len(l) {
			name = specs[i]
		}
		switch x := e.(type) {
		case nil:
		case maps.Lister:
			entries = append(entries, x.Entries()...)
		default:
			unlisted = append(unlisted, name)
		}
	}
	return entries, unlisted
}

func splitList(v string) []string {
	return strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}
