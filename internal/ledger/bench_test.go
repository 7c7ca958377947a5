package ledger

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
	"github.com/mailtee/mailtee/internal/testdb"
)

// benchMessage is a message as the relay and the seed's primary see it:
// a client, a Message-ID, and rcpts recipients (the second a copy).
func benchMessage(i, rcpts int) *queue.Message {
	env := &envelope.Envelope{From: "sender@bench.example", ClientName: "localhost", ClientAddr: "127.0.0.1",
		Arrival: time.Now(), MessageID: fmt.Sprintf("<%d.bench@bench.example>", i)}
	env.Rcpts = append(env.Rcpts, envelope.Rcpt{Addr: "mtbench@bench.example"})
	for r := 1; r < rcpts; r++ {
		env.Rcpts = append(env.Rcpts, envelope.Rcpt{Addr: "copy@relay.example", Copy: true})
	}
	return queue.NewMemMessage(fmt.Sprintf("4Zb%07dX", i), env, make([]byte, 2048))
}

// benchRecorder runs what the queue does for each message of a run —
// Accepted, one Delivery per recipient, Final — through a Recorder
// writing to a real SQLite file, and waits for every Final's done: ns/op
// is the ledger's cost per message (its writer is the bottleneck once
// the channel is full), allocs/op counts every goroutine's allocations.
//
// With split, the deliveries and Finals of each group of 50 messages
// come 30 ms after their Accepted, longer than a batch gathers (Every):
// as in a server, where a message is accepted in one batch and
// delivered in a later one.
func benchRecorder(b *testing.B, rcpts int, split bool) {
	benchRecorderAt(b, nil, rcpts, split)
}

// benchRecorderAt is benchRecorder on the PostgreSQL server pg (nil:
// SQLite), whose CPU (its postmaster and backends) is reported too as
// db-cpu-µs/op: with SQLite that work is in cpu-µs/op already.
func benchRecorderAt(b *testing.B, pg *testdb.Server, rcpts int, split bool) {
	dir := b.TempDir()
	path := filepath.Join(dir, "ledger.db")
	if pg != nil {
		be := &backend{name: "postgres", pg: pg, t: b, dbs: map[string]string{}}
		path = be.at(dir)
	}
	r := NewRecorder(RecorderOptions{Path: path, Node: "relay.bench.example",
		Marker: filepath.Join(dir, "ledger.state"), Phase: func(string) string { return "recipient_bcc_maps=static:copy@relay.example" }})
	defer r.Close()
	msgs := make([]*queue.Message, b.N)
	for i := range msgs {
		msgs[i] = benchMessage(i, rcpts)
	}
	hop := envelope.Hop{Transport: "smtp", Nexthop: "[127.0.0.1]:2525"}
	var wg sync.WaitGroup
	wg.Add(b.N)
	b.ReportAllocs()
	cpu0, db0 := cpuTime(), serverCPU(pg)
	b.ResetTimer()
	const group = 50
	for k, m := range msgs {
		if !split {
			r.Accepted(m)
		} else if k%group == 0 {
			for _, m := range msgs[k:min(k+group, len(msgs))] {
				r.Accepted(m)
			}
			time.Sleep(30 * time.Millisecond)
		}
		for i := range m.Rcpts {
			o := queue.Outcome{Relay: "127.0.0.1[127.0.0.1]:2525", Reply: "250 2.0.0 Ok: queued as 4ZxSINK" + m.ID, DSN: "2.0.0"}
			m.Rcpts[i].Status, m.Rcpts[i].Attempt = queue.Sent, &queue.Attempt{LastErr: o.Reply, DSN: o.DSN, Relay: o.Relay}
			r.Delivery(m, i, hop, o, "sent", time.Now())
		}
		r.Final(m, false, wg.Done)
	}
	wg.Wait()
	b.StopTimer()
	// CPU time, not wall time, is what the ledger takes from mail on a
	// loaded machine: the process's, every goroutine's (SQLite included).
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	if pg != nil {
		db := serverCPU(pg) - db0
		b.ReportMetric(float64(db.Microseconds())/float64(b.N), "db-cpu-µs/op")
		b.ReportMetric(float64((cpu+db).Microseconds())/float64(b.N), "all-cpu-µs/op")
	} else {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "all-cpu-µs/op")
	}
	if st := r.Stats(); st.Failures != 0 || st.Lost != 0 {
		b.Fatalf("ledger failures: %+v", st)
	}
}

func BenchmarkRecorderRelay(b *testing.B)      { benchRecorder(b, 1, false) }
func BenchmarkRecorderSeed(b *testing.B)       { benchRecorder(b, 2, false) }
func BenchmarkRecorderRelaySplit(b *testing.B) { benchRecorder(b, 1, true) }
func BenchmarkRecorderSeedSplit(b *testing.B)  { benchRecorder(b, 2, true) }

// The same on PostgreSQL (the test binary's server: fsync off, as
// testdb starts it, so its figure leaves out what a durable commit
// costs the server's kernel).
func BenchmarkRecorderRelayPG(b *testing.B)      { benchRecorderAt(b, pgServer(b), 1, false) }
func BenchmarkRecorderSeedPG(b *testing.B)       { benchRecorderAt(b, pgServer(b), 2, false) }
func BenchmarkRecorderRelaySplitPG(b *testing.B) { benchRecorderAt(b, pgServer(b), 1, true) }
func BenchmarkRecorderSeedSplitPG(b *testing.B)  { benchRecorderAt(b, pgServer(b), 2, true) }

// serverCPU is the CPU time of PostgreSQL server pg so far: its
// postmaster's, that of the backends it reaped (cutime, cstime) and of
// those alive (zero for nil).
func serverCPU(pg *testdb.Server) time.Duration {
	if pg == nil {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(pg.SocketDir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	pm, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	ticks := func(pid string) (ppid int, own, children int64) {
		s, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return -1, 0, 0
		}
		f := strings.Fields(string(s[strings.LastIndexByte(string(s), ')')+2:]))
		// fields after the name: state ppid ... utime(12) stime(13) cutime(14) cstime(15)
		ppid, _ = strconv.Atoi(f[1])
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		cu, _ := strconv.ParseInt(f[13], 10, 64)
		cs, _ := strconv.ParseInt(f[14], 10, 64)
		return ppid, u + st, cu + cs
	}
	_, own, reaped := ticks(strconv.Itoa(pm))
	total := own + reaped
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		if ppid, own, _ := ticks(e.Name()); ppid == pm {
			total += own
		}
	}
	const hz = 100 // USER_HZ on Linux
	return time.Duration(total) * time.Second / hz
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
