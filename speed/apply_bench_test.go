package speed

import (
	"testing"
	"time"
)

// BenchmarkApplyPolls is the apply path alone, per event: the second half
// of the benchmark stream (the first half warms the state) applied as a
// layer keeping up with 50,000 events/s gets it, in polls of 50 records
// (1 ms), each followed by what a poll does to the contributions (the
// settle of the logs on goroutines, the rows' bumps), but no view scored.
// Reported per event: process CPU (the settle's goroutines included);
// worst_poll_µs is the longest single poll of the timed half (wall time,
// so on a loaded machine also a preemption): the state's tables grow in
// it (the entries double from its start to its end), and a table that
// rehashed everything at once showed there.
// members=1 is a member owning every partition (it tracks no changed pairs
// to publish, holdPublish), members=2 one that publishes its deltas to
// others (partition.pub).
func BenchmarkApplyPolls(b *testing.B) {
	recs := benchStream(b)
	batch := benchBatch(b, recs)
	half := len(recs) / 2
	const per = 50
	var worst time.Duration
	apply := func(p *processor, recs []benchRecord, now time.Time) {
		for i := 0; i < len(recs); i += per {
			t0 := time.Now()
			p.waitSettle()
			poll := recs[i:min(i+per, len(recs))]
			p.beginApply(len(poll))
			for _, r := range poll {
				if _, err := p.record(r.part, r.off, now, r.value); err != nil {
					b.Fatal(err)
				}
			}
			p.startSettle()
			p.applyBumps()
			worst = max(worst, time.Since(t0))
		}
		p.waitSettle()
	}
	for _, sole := range []bool{true, false} {
		name := "members=1"
		if !sole {
			name = "members=2"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				l := newTestLayer(b)
				l.proc = ownedProcessor(b, defaultLimits(), batch)
				if sole {
					l.proc.holdPublish()
				}
				now := time.Now()
				apply(l.proc, recs[:half], now)
				b.StartTimer()
				worst = 0
				cpu0 := processCPU(b)
				apply(l.proc, recs[half:], now)
				cpu := processCPU(b) - cpu0
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(len(recs)-half), "process_cpu_ns/event")
				b.ReportMetric(float64(worst.Microseconds()), "worst_poll_µs")
			}
		})
	}
}
