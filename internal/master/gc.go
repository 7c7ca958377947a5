package master

import (
	"os"
	goruntime "runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// gcHeadroom is how far the heap may grow past what is live before the
// collector runs.
const gcHeadroom = 64 << 20

// tuneGC bounds the heap's growth once the tables are loaded. Go's
// default (GOGC=100) lets the heap reach twice what is live; with a
// 1,000,000-entry table (about 140 MB) that is 280 MB under load. The
// collector then runs a little more often in exchange, only for servers
// with large tables. A GOGC set in the environment is left alone.
func tuneGC() {
	if os.Getenv("GOGC") != "" {
		return
	}
	goruntime.GC()
	setGCPercent()
}

// setGCPercent applies gcPercent to the live heap as of the last
// collection, read from runtime/metrics without stopping the world. It
// reports false where the runtime does not give that figure.
func setGCPercent() bool {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return false
	}
	debug.SetGCPercent(gcPercent(sample[0].Value.Uint64()))
	return true
}

// gcPercent is the GOGC that gives a live heap of live bytes about
// gcHeadroom to grow: 100 (Go's default) for small heaps, down to 25.
func gcPercent(live uint64) int {
	if live <= gcHeadroom {
		return 100
	}
	return max(25, int(100*gcHeadroom/live))
}

// GCTuner keeps tuneGC's rule as the live heap changes: a queue of
// 100,000 deferred messages is live memory too. It reads the live heap
// every 10 s until stop is closed.
func GCTuner(stop <-chan struct{}) {
	if os.Getenv("GOGC") != "" {
		return
	}
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if !setGCPercent() {
			return
		}
	}
}
