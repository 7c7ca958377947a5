// Package pflog reads a Postfix primary's mail log, with its main.cf and
// tables, into the ledger's model: the messages Postfix accepted and the
// outcome of each of their deliveries, as a mailtee primary would have
// recorded them, so that `mailtee report --postfix-log` reconciles a
// Postfix primary with a mailtee relay the way it does a mailtee primary.
//
// The log is read as Postfix 2.x and 3.x write it, one event per line,
// keyed by queue ID (short or long form):
//
//	smtpd    QUEUEID: client=name[addr]           a message arrives by SMTP
//	pickup   QUEUEID: uid=0 from=<sender>          ... or by sendmail
//	cleanup  QUEUEID: message-id=<...>
//	qmgr     QUEUEID: from=<s>, size=N, nrcpt=N (queue active)
//	smtp, lmtp, local, virtual, pipe, error, discard (any delivery agent):
//	         QUEUEID: to=<r>, orig_to=<o>, relay=..., delay=..., delays=...,
//	         dsn=X.Y.Z, status=sent|deferred|bounced (reply)
//	local    ... status=sent (forwarded as NEWID)  NEWID is a child
//	bounce   QUEUEID: sender non-delivery notification: NEWID   a notice
//	qmgr     QUEUEID: from=<s>, status=expired, returned to sender
//	qmgr     QUEUEID: removed                      the message left the queue
//	postsuper QUEUEID: removed                     deleted by the administrator
//
// Each line starts with a syslog header: a classic stamp without a year
// ("Dec  7 01:02:03", whose year is inferred: the newest line is not in
// the future, and each turn of the year inside the file goes back one)
// or an RFC 3339 stamp (rsyslog's high-precision format), the host, and
// the tag, whose last component names the program whatever syslog_name
// says ("postfix/submission/smtpd", "postfix-out/smtp"). Lines that are
// not in this shape are counted and skipped.
//
// Which deliveries are copies the log does not say: Postfix logs a
// recipient that recipient_bcc_maps added like any other. Load reads the
// primary's main.cf and looks up the message's sender and original
// recipients in its BCC tables: a delivery to an address those lookups
// give is a copy.
package pflog

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mailtee/mailtee/internal/ledger"
)

// Options adjust how a log is read.
type Options struct {
	// Now is the time the log is read at (default: time.Now()): the
	// newest classic stamp is taken to be no later than Now plus a day.
	Now time.Time
	// Location is the time zone of classic stamps (default time.Local).
	Location *time.Location
	// Node, when set, names the host of every message (default: each
	// line's host field).
	Node string
}

// Stats are what reading the log found besides the messages.
type Stats struct {
	Lines    int // lines read
	Skipped  int // lines not in syslog shape (counted, never an error)
	Messages int // messages found
	// NotQueued counts messages that cleanup began (client=, message-id=)
	// but that never reached the queue: no qmgr line, no delivery, no
	// "removed", and either no smtpd or pickup line (a notice bounce(8)
	// cancelled) or the log goes on for more than 5 minutes after.
	NotQueued int
	// Partial lists the queue IDs of messages seen without their start
	// (no smtpd, pickup or cleanup line): their first lines were
	// rotated away, so their sender and recipients may be incomplete.
	Partial []string
}

// Log is a Postfix log read into memory: a ledger.Reader.
type Log struct {
	msgs  []ledger.Message // in order of arrival
	byID  map[string][]int // queue ID -> indices in msgs, oldest first
	kids  map[string][]int // node+" "+parent queue ID -> indices in msgs
	gaps  []ledger.Gap
	stats Stats
}

// Stats returns what reading the log found.
func (l *Log) Stats() Stats { return l.stats }

// Load reads the Postfix log at logPath (gzip-compressed when its name
// ends in .gz) and, when configDir is not "", the primary's main.cf and
// the tables it names, to tell copies from the other deliveries.
//
// The Reader is a *Log (see Stats).
func Load(logPath, configDir string, o Options) (ledger.Reader, error) {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	var rules *copyRules
	if configDir != "" {
		var err error
		if rules, err = loadCopyRules(configDir); err != nil {
			return nil, err
		}
	}
	// Two passes: the first finds the year of the file's first classic
	// stamp, which only its last one can tell.
	firstYear := 0
	err := scanFile(logPath, func(r io.Reader) error {
		var err error
		firstYear, err = inferYear(r, o)
		return err
	})
	if err != nil {
		return nil, err
	}
	b := newBuilder(o, firstYear)
	if err := scanFile(logPath, b.read); err != nil {
		return nil, err
	}
	lg, err := b.finish(context.Background(), rules)
	if err != nil {
		return nil, err
	}
	return lg, nil
}

func scanFile(path string, fn func(io.Reader) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("--postfix-log: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		z, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("--postfix-log %s: %w", path, err)
		}
		defer z.Close()
		r = z
	}
	if err := fn(r); err != nil {
		return fmt.Errorf("--postfix-log %s: %w", path, err)
	}
	return nil
}

// lines calls fn with each line of r; a line longer than the buffer is
// cut (its head is enough for the header and the fields).
func lines(r io.Reader, fn func(string)) error {
	br := bufio.NewReaderSize(r, 64*1024)
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			fn(string(line))
			for err == bufio.ErrBufferFull {
				_, err = br.ReadSlice('\n')
			}
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			continue
		}
		if len(line) > 0 {
			fn(string(line))
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// yearTurn reports how a classic stamp's month moved from the previous
// line's: +1 when the year turned (Dec → Jan), -1 when the line belongs
// to the year before (a late line from December after January's), 0
// else. Half a year is the threshold either way.
func yearTurn(prev, cur time.Month) int {
	switch {
	case prev == 0:
		return 0
	case cur+6 <= prev:
		return 1
	case prev+6 <= cur:
		return -1
	}
	return 0
}

// inferYear returns the year of the first classic stamp of r: the last
// one's year is Now's, or the one before when that would put it more
// than a day after Now, and each turn of the year between them goes back
// one.
func inferYear(r io.Reader, o Options) (int, error) {
	var prev time.Month
	turns := 0
	var last time.Time
	err := lines(r, func(s string) {
		l, ok := ParseLine(s, o.Location)
		if !ok || !l.Yearless {
			return
		}
		if yearTurn(prev, l.Time.Month()) > 0 {
			turns++
		}
		if yearTurn(prev, l.Time.Month()) >= 0 {
			prev = l.Time.Month()
		}
		last = l.Time
	})
	if err != nil {
		return 0, err
	}
	now := o.Now.In(o.Location)
	year := now.Year()
	if withYear(last, year).After(now.Add(24 * time.Hour)) {
		year--
	}
	return year - turns, nil
}

// withYear is t (a yearless stamp) in year y.
func withYear(t time.Time, y int) time.Time {
	return time.Date(y, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), t.Location())
}

// notQueuedAfter is how long after a message's cleanup line its qmgr
// line must be in the log for it to count as queued; a message nearer
// the end of the log may simply not have reached qmgr yet.
const notQueuedAfter = 5 * time.Minute

// msg is a message being assembled.
type msg struct {
	m       ledger.Message
	started bool // a client=, pickup or cleanup line was seen
	cleanup bool // its cleanup message-id= line was seen
	removed bool
	queued  bool // qmgr's from= line was seen: it entered the active queue
	held    bool // cleanup put it on hold (header/body checks HOLD)
	dropped bool // rejected by cleanup, discarded, or an address probe
	nrcpt   int
	dels    map[string]int // orig+"\n"+to -> index in m.Deliveries
	alias   string         // a forward's: the alias it was made for
}

type builder struct {
	o     Options
	year  int
	prev  time.Month
	msgs  []*msg
	cur   map[string]*msg // node+" "+queue ID -> the message now under it
	stats Stats
	// lastAt is the newest line's time.
	lastAt time.Time
	// intern keeps one copy of the strings many records share (hosts,
	// transports, relays, DSN codes): every other string kept is cloned,
	// so that no record holds its whole log line.
	intern map[string]string
}

func (b *builder) in(s string) string {
	if v, ok := b.intern[s]; ok {
		return v
	}
	if len(b.intern) > 100000 {
		return strings.Clone(s)
	}
	v := strings.Clone(s)
	b.intern[v] = v
	return v
}

func newBuilder(o Options, firstYear int) *builder {
	return &builder{o: o, year: firstYear, cur: map[string]*msg{}, intern: map[string]string{}}
}

func (b *builder) read(r io.Reader) error {
	return lines(r, b.line)
}

// stamp gives a yearless stamp its year, following turns of the year.
func (b *builder) stamp(l Line) time.Time {
	if !l.Yearless {
		return l.Time
	}
	y := b.year
	switch yearTurn(b.prev, l.Time.Month()) {
	case 1:
		b.year++
		y = b.year
		b.prev = l.Time.Month()
	case -1:
		y--
	default:
		b.prev = l.Time.Month()
	}
	return withYear(l.Time, y)
}

var (
	forwardedRe = regexp.MustCompile(`\bforwarded as ([0-9A-Za-z]+)`)
	noticeRe    = regexp.MustCompile(`^(sender|postmaster) (non-delivery|delay|delivery status) notification: ([0-9A-Za-z]+)`)
)

// line reads one log line.
func (b *builder) line(s string) {
	b.stats.Lines++
	l, ok := ParseLine(s, b.o.Location)
	if !ok {
		if strings.TrimSpace(s) != "" {
			b.stats.Skipped++
		}
		return
	}
	at := b.stamp(l)
	if at.After(b.lastAt) {
		b.lastAt = at
	}
	if l.QueueID == "" {
		return
	}
	node := b.in(l.Host)
	if b.o.Node != "" {
		node = b.o.Node
	}
	text := l.Text
	switch {
	case l.Daemon == "smtpd" && strings.HasPrefix(text, "client="):
		f, _ := Fields(text)
		m := b.start(node, l.QueueID, at, func(m *msg) bool { return m.m.Client != "" || m.cleanup })
		m.m.Client = strings.Clone(f["client"])
	case l.Daemon == "pickup" && strings.Contains(text, "from=<"):
		m := b.start(node, l.QueueID, at, func(m *msg) bool { return m.m.Client != "" || m.cleanup })
		m.m.Client = "local"
		if i := strings.Index(text, "from=<"); i >= 0 {
			m.m.From = strings.Clone(addr(firstWord(text[i+len("from="):])))
		}
	case l.Daemon == "cleanup" && strings.HasPrefix(text, "message-id="):
		m := b.start(node, l.QueueID, at, func(m *msg) bool { return m.cleanup })
		m.cleanup = true
		m.m.MessageID = strings.Clone(strings.TrimSpace(strings.TrimPrefix(text, "message-id=")))
	case l.Daemon == "cleanup" && (strings.HasPrefix(text, "reject:") || strings.HasPrefix(text, "milter-reject:") || strings.HasPrefix(text, "discard:")):
		if m := b.get(node, l.QueueID, at); m != nil {
			m.dropped = true
		}
	case l.Daemon == "cleanup" && strings.HasPrefix(text, "hold:"):
		if m := b.get(node, l.QueueID, at); m != nil {
			m.held = true
		}
	case (l.Daemon == "qmgr" || l.Daemon == "nqmgr") && text == "removed":
		if m := b.get(node, l.QueueID, at); m != nil {
			m.removed = true
			m.m.Finished = at
		}
	case l.Daemon == "postsuper" && text == "removed":
		if m := b.get(node, l.QueueID, at); m != nil {
			m.removed = true
			m.m.Finished = at
			for i := range m.m.Deliveries {
				if d := &m.m.Deliveries[i]; !d.Status.Final() {
					d.Status, d.At = ledger.Deleted, at
				}
			}
			// Recipients never tried have no line: a deleted message
			// with none still shows as deleted.
			if len(m.m.Deliveries) == 0 {
				m.m.Deliveries = append(m.m.Deliveries, ledger.Delivery{Status: ledger.Deleted, At: at, Reply: "deleted by postsuper before any delivery was logged"})
			}
		}
	case (l.Daemon == "qmgr" || l.Daemon == "nqmgr") && strings.HasPrefix(text, "from="):
		f, reply := Fields(text)
		m := b.get(node, l.QueueID, at)
		if m == nil {
			return
		}
		m.queued = true
		m.m.From = b.in(addr(f["from"]))
		if n, err := strconv.ParseInt(firstWord(f["size"]), 10, 64); err == nil {
			m.m.Size = n
		}
		if n, err := strconv.Atoi(firstWord(f["nrcpt"])); err == nil {
			m.nrcpt = n
		}
		if f["status"] == "expired" {
			for i := range m.m.Deliveries {
				if d := &m.m.Deliveries[i]; !d.Status.Final() {
					d.Status, d.At = ledger.Expired, at
					if d.Reply == "" {
						d.Reply = strings.Clone(reply)
					}
				}
			}
		}
	case l.Daemon == "bounce" && noticeRe.MatchString(text):
		sm := noticeRe.FindStringSubmatch(text)
		parent := b.get(node, l.QueueID, at)
		child := b.fresh(node, sm[3], at)
		if parent != nil && child != nil && child != parent {
			child.m.Parent, child.m.Notice, child.started = parent.m.ID, true, true
		}
	case strings.HasPrefix(text, "to="):
		b.delivery(node, l, at)
	}
}

// get returns the message now under queue ID id, creating it (seen
// without its start) when there is none.
func (b *builder) get(node, id string, at time.Time) *msg {
	if m := b.cur[node+" "+id]; m != nil {
		return m
	}
	return b.add(node, id, at)
}

// fresh returns the message under queue ID id that is being made now
// (a forward, a notice): a removed one under that ID is an older message.
func (b *builder) fresh(node, id string, at time.Time) *msg {
	if m := b.cur[node+" "+id]; m != nil && !m.removed {
		return m
	}
	return b.add(node, id, at)
}

// start returns the message a starting line (client=, pickup,
// message-id=) belongs to: the one under id, unless that one is finished
// or already has what this line gives (isDone), which means Postfix
// reused the queue ID for a new message.
func (b *builder) start(node, id string, at time.Time, isDone func(*msg) bool) *msg {
	m := b.cur[node+" "+id]
	if m == nil || m.removed || isDone(m) {
		m = b.add(node, id, at)
	}
	m.started = true
	return m
}

func (b *builder) add(node, id string, at time.Time) *msg {
	m := &msg{m: ledger.Message{Node: node, ID: strings.Clone(id), Arrival: at}, dels: map[string]int{}}
	b.msgs = append(b.msgs, m)
	b.cur[node+" "+id] = m
	return m
}

// delivery reads a delivery agent's line.
func (b *builder) delivery(node string, l Line, at time.Time) {
	f, reply := Fields(l.Text)
	status := f["status"]
	m := b.get(node, l.QueueID, at)
	switch status {
	case "":
		return
	case "deliverable", "undeliverable":
		// Address verification probes (verify(8), sendmail -bv) are no
		// mail.
		m.dropped = true
		return
	}
	to, orig := addr(f["to"]), addr(f["orig_to"])
	key := strings.ToLower(orig) + "\n" + strings.ToLower(to)
	var fwd []string
	if status == "sent" {
		fwd = forwardedRe.FindStringSubmatch(reply)
	}
	if fwd != nil {
		// local(8) logs each target of an alias or .forward it
		// forwarded ("to=<target>, orig_to=<alias>, ... (forwarded as
		// NEWID)"); mailtee's ledger has one delivery, to the alias,
		// whose targets are the forward's deliveries: so has this.
		if orig != "" {
			to, orig = orig, ""
		}
		key = strings.ToLower(to) + "\nforward " + fwd[1]
	}
	i, ok := m.dels[key]
	if !ok {
		i = len(m.m.Deliveries)
		m.dels[key] = i
		m.m.Deliveries = append(m.m.Deliveries, ledger.Delivery{Index: i, Rcpt: strings.Clone(to), Orig: strings.Clone(orig)})
	}
	d := &m.m.Deliveries[i]
	if fwd != nil && d.Attempts > 0 {
		return // another target of the same forward
	}
	d.Attempts++
	d.At = at
	if l.Daemon != "qmgr" && l.Daemon != "nqmgr" {
		// qmgr logs deliveries it gave up on itself (a suspended
		// destination, an expired message): no transport ran.
		d.Transport = b.in(transport(l.Program))
	}
	d.Relay = b.in(f["relay"])
	d.DSN = b.in(f["dsn"])
	d.Reply = strings.Clone(reply)
	switch status {
	case "sent":
		d.Status = ledger.Sent
		d.RemoteID = strings.Clone(remoteID(reply))
		if fwd != nil {
			child := b.fresh(node, fwd[1], at)
			if child != m {
				child.m.Parent, child.started = m.m.ID, true
				child.alias = d.Rcpt
			}
			d.RemoteID = ""
		}
	case "bounced":
		d.Status = ledger.Bounced
	case "expired":
		d.Status = ledger.Expired
	default: // deferred, SOFTBOUNCE
		d.Status = ledger.Pending
	}
}

// remoteID is ledger.RemoteID on reply with its non-ASCII bytes
// replaced: RemoteID indexes reply with an offset found in its
// lower-cased copy, which for some non-ASCII text (invalid UTF-8, 'İ')
// is longer than reply, and panics. Queue IDs are ASCII.
func remoteID(reply string) string {
	b := []byte(reply)
	for i, c := range b {
		if c >= 0x80 {
			b[i] = '?'
		}
	}
	return ledger.RemoteID(string(b))
}

// transport names the delivery service from the tag: the middle
// component of "postfix/relay/smtp" (a master.cf service with its own
// syslog_name), else the program.
func transport(program string) string {
	parts := strings.Split(program, "/")
	if len(parts) >= 3 {
		return parts[len(parts)-2]
	}
	return parts[len(parts)-1]
}

// finish decides copies and original recipients and builds the Log.
func (b *builder) finish(ctx context.Context, rules *copyRules) (*Log, error) {
	lg := &Log{byID: map[string][]int{}}
	var partialSince, partialUntil time.Time
	partialNodes := map[string]bool{}
	for _, m := range b.msgs {
		if m.dropped {
			continue
		}
		internal := m.m.Client == "" && m.m.Parent == ""
		if !m.queued && !m.removed && !m.held && len(m.m.Deliveries) == 0 && (internal || b.lastAt.Sub(m.m.Arrival) > notQueuedAfter) {
			// cleanup began it and it never reached the queue: a
			// notice bounce(8) cancelled (a failed BCC copy has DSN
			// NOTIFY=NEVER, so no sender is told, yet cleanup logged
			// the notice's message-id: at once, as it has no smtpd or
			// pickup line), a client gone in DATA (after 5 minutes).
			lg.stats.NotQueued++
			continue
		}
		if !m.started {
			lg.stats.Partial = append(lg.stats.Partial, m.m.ID)
			if partialSince.IsZero() || m.m.Arrival.Before(partialSince) {
				partialSince = m.m.Arrival
			}
			if m.m.Arrival.After(partialUntil) {
				partialUntil = m.m.Arrival
			}
			partialNodes[m.m.Node] = true
		}
		if m.alias != "" {
			// A forward's deliveries came from its alias, whether or
			// not Postfix logged the original recipient.
			for i := range m.m.Deliveries {
				if d := &m.m.Deliveries[i]; d.Orig == "" {
					d.Orig = m.alias
				}
			}
		}
		m.dels = nil
		if rules != nil {
			if err := markCopies(ctx, rules, &m.m); err != nil {
				return nil, fmt.Errorf("queue ID %s: %w", m.m.ID, err)
			}
		}
		m.m.Rcpts = originals(m.m.Deliveries)
		if !m.removed && allFinal(m.m.Deliveries) {
			// Still in the queue with every logged delivery final:
			// some recipient has had no delivery line yet.
			m.m.Deliveries = append(m.m.Deliveries, ledger.Delivery{Index: len(m.m.Deliveries), Status: ledger.Pending,
				At: m.m.Arrival, Reply: fmt.Sprintf("not removed from the queue, and no delivery logged for some recipient (nrcpt=%d)", m.nrcpt)})
		}
		lg.byID[m.m.ID] = append(lg.byID[m.m.ID], len(lg.msgs))
		lg.msgs = append(lg.msgs, m.m)
	}
	if n := len(lg.stats.Partial); n > 0 {
		nodes := make([]string, 0, len(partialNodes))
		for k := range partialNodes {
			nodes = append(nodes, k)
		}
		slices.Sort(nodes)
		lg.gaps = append(lg.gaps, ledger.Gap{Node: strings.Join(nodes, ","), Since: partialSince, Until: partialUntil.Add(time.Second), Messages: n,
			Reason: fmt.Sprintf("%d message(s) seen in the Postfix log without their start (no smtpd, pickup or cleanup line: rotated away?); their sender and recipients may be incomplete", n)})
	}
	lg.stats.Lines, lg.stats.Skipped, lg.stats.Messages = b.stats.Lines, b.stats.Skipped, len(lg.msgs)
	slices.SortStableFunc(lg.msgs, func(a, c ledger.Message) int { return a.Arrival.Compare(c.Arrival) })
	lg.byID, lg.kids = map[string][]int{}, map[string][]int{}
	for i, m := range lg.msgs {
		lg.byID[m.ID] = append(lg.byID[m.ID], i)
		if m.Parent != "" {
			lg.kids[m.Node+" "+m.Parent] = append(lg.kids[m.Node+" "+m.Parent], i)
		}
	}
	return lg, nil
}

func allFinal(ds []ledger.Delivery) bool {
	for _, d := range ds {
		if !d.Status.Final() {
			return false
		}
	}
	return true
}

// originals are the message's original recipients as the log shows
// them: each delivery's orig_to (else to=), copies left out, in order.
func originals(ds []ledger.Delivery) []string {
	var out []string
	seen := map[string]bool{}
	for _, d := range ds {
		if d.Copy || d.Rcpt == "" {
			continue
		}
		a := d.Orig
		if a == "" {
			a = d.Rcpt
		}
		if k := strings.ToLower(a); !seen[k] {
			seen[k] = true
			out = append(out, a)
		}
	}
	return out
}

// markCopies sets Copy on each delivery whose address is a BCC result
// of the sender or of another delivery's original recipient (a copy is
// never its own origin), and names that recipient in Orig.
func markCopies(ctx context.Context, rules *copyRules, m *ledger.Message) error {
	fromSender := map[string]bool{}
	if m.From != "" {
		rs, err := rules.of(ctx, m.From, "")
		if err != nil {
			return err
		}
		for _, r := range rs {
			fromSender[strings.ToLower(r.Addr)] = true
		}
	}
	keyOf := func(d ledger.Delivery) string {
		if d.Orig != "" {
			return d.Orig
		}
		return d.Rcpt
	}
	type origin struct {
		key    string          // the original recipient, as logged
		copies map[string]bool // lower-cased BCC results
	}
	var origins []origin
	seen := map[string]bool{}
	for _, d := range m.Deliveries {
		k := keyOf(d)
		if k == "" || seen[strings.ToLower(k)] {
			continue
		}
		seen[strings.ToLower(k)] = true
		rs, err := rules.of(ctx, "", k)
		if err != nil {
			return err
		}
		o := origin{key: k, copies: map[string]bool{}}
		for _, r := range rs {
			o.copies[strings.ToLower(r.Addr)] = true
		}
		origins = append(origins, o)
	}
	for i := range m.Deliveries {
		d := &m.Deliveries[i]
		a := strings.ToLower(d.Rcpt)
		if a == "" {
			continue
		}
		own := strings.ToLower(keyOf(*d))
		for _, o := range origins {
			if strings.ToLower(o.key) != own && o.copies[a] {
				d.Copy = true
				if d.Orig == "" {
					d.Orig = o.key
				}
				break
			}
		}
		if fromSender[a] {
			d.Copy = true
		}
	}
	return nil
}

// Messages returns the messages f selects, in order of arrival (newest
// first when f.Limit is set).
func (l *Log) Messages(ctx context.Context, f ledger.Filter) ([]ledger.Message, error) {
	var out []ledger.Message
	for _, m := range l.msgs {
		if !f.Since.IsZero() && m.Arrival.Before(f.Since) || !f.Until.IsZero() && !m.Arrival.Before(f.Until) {
			continue
		}
		if !f.MatchesMessage(m) {
			continue
		}
		out = append(out, m)
	}
	if f.Limit > 0 {
		slices.Reverse(out)
		if len(out) > f.Limit {
			out = out[:f.Limit]
		}
	}
	return out, nil
}

// Message returns the newest message under queue ID id (on node, when
// node is not ""): Postfix reuses short queue IDs.
func (l *Log) Message(ctx context.Context, node, id string) (ledger.Message, bool, error) {
	idx := l.byID[id]
	for i := len(idx) - 1; i >= 0; i-- {
		if m := l.msgs[idx[i]]; node == "" || m.Node == node {
			return m, true, nil
		}
	}
	return ledger.Message{}, false, nil
}

// Children returns the messages made from message id on node: its
// forwards and notices.
func (l *Log) Children(ctx context.Context, node, id string) ([]ledger.Message, error) {
	var out []ledger.Message
	if node != "" {
		for _, i := range l.kids[node+" "+id] {
			out = append(out, l.msgs[i])
		}
		return out, nil
	}
	nodes := map[string]bool{}
	for _, i := range l.byID[id] {
		if n := l.msgs[i].Node; !nodes[n] {
			nodes[n] = true
			for _, k := range l.kids[n+" "+id] {
				out = append(out, l.msgs[k])
			}
		}
	}
	return out, nil
}

// Gaps returns the gaps that overlap [since, until).
func (l *Log) Gaps(ctx context.Context, since, until time.Time) ([]ledger.Gap, error) {
	var out []ledger.Gap
	for _, g := range l.gaps {
		if !until.IsZero() && !g.Since.Before(until) || !since.IsZero() && !g.Until.After(since) {
			continue
		}
		out = append(out, g)
	}
	return out, nil
}

var _ ledger.Reader = (*Log)(nil)
