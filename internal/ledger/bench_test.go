package ledger

import (
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailtee/mailtee/internal/envelope"
	"github.com/mailtee/mailtee/internal/queue"
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
	dir := b.TempDir()
	r := NewRecorder(RecorderOptions{Path: filepath.Join(dir, "ledger.db"), Node: "relay.bench.example",
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
	cpu0 := cpuTime()
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
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	if st := r.Stats(); st.Failures != 0 || st.Lost != 0 {
		b.Fatalf("ledger failures: %+v", st)
	}
}

func BenchmarkRecorderRelay(b *testing.B)      { benchRecorder(b, 1, false) }
func BenchmarkRecorderSeed(b *testing.B)       { benchRecorder(b, 2, false) }
func BenchmarkRecorderRelaySplit(b *testing.B) { benchRecorder(b, 1, true) }
func BenchmarkRecorderSeedSplit(b *testing.B)  { benchRecorder(b, 2, true) }

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
