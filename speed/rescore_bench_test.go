package speed

import (
	"fmt"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// BenchmarkRescoreDemand is the layer's processing and scoring of a stream
// it keeps up with, on a clock of its own: the second half of the bench
// stream (past the batch) at rate events/s, in polls of 10 ms of records,
// each poll's records applied, the rescorings due marked (Layer.rescore)
// and the dirty sessions scored — no broker, no store, no wall clock, so
// how many views are rescored does not depend on the machine's load.
// Reported per event: the views scored, of which rescorings, and the
// process CPU.
func BenchmarkRescoreDemand(b *testing.B) {
	for _, rate := range []int{20_000, 50_000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) { benchRescoreDemand(b, rate) })
	}
}

func benchRescoreDemand(b *testing.B, rate int) {
	recs := benchStream(b)
	batch := benchBatch(b, recs)
	const poll = 10 * time.Millisecond
	per := rate / int(time.Second/poll)
	half := len(recs) / 2
	for b.Loop() {
		l, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Group: "g"}, Deps{Views: store.NewMemory()})
		if err != nil {
			b.Fatal(err)
		}
		l.m.lagNow.Store(0)
		l.proc = ownedProcessor(b, defaultLimits(), batch)
		p := l.proc
		// The layer's steps of a poll (steadyPolls), settling included.
		_, now := steadyPolls(b, l, recs[:half], per, time.Now(), poll) // sessions and rows as the layer has them
		r0 := p.c.rescored
		cpu0 := processCPU(b)
		views, _ := steadyPolls(b, l, recs[half:], per, now, poll)
		cpu := processCPU(b) - cpu0
		n := float64(len(recs) - half)
		b.ReportMetric(float64(views)/n, "views/event")
		b.ReportMetric(float64(p.c.rescored-r0)/n, "rescored/event")
		b.ReportMetric(float64(cpu.Microseconds())/n, "process_cpu_µs/event")
	}
}
