package model

import (
	"testing"
	"time"
)

// BenchmarkSpill is the full recompute in parts: 2M generated events added
// to a Spill of 4 shards (the scan's part), then built part by part. It
// reports the CPU time per event of each phase (process user+sys, far less
// sensitive to other load than wall time).
func BenchmarkSpill(b *testing.B) {
	const n = 2_000_000
	evs := make([]Event, 0, n)
	genEvents(n, func(e Event) { evs = append(evs, e) })
	b.ReportAllocs()
	b.ResetTimer()
	var add, build time.Duration
	for b.Loop() {
		a, err := NewAccumulator(DefaultParams())
		if err != nil {
			b.Fatal(err)
		}
		s, err := a.Spill(b.TempDir(), 4)
		if err != nil {
			b.Fatal(err)
		}
		c0 := cpuTime()
		for _, e := range evs {
			s.Add(e)
		}
		c1 := cpuTime()
		if err := s.Build(nil); err != nil {
			b.Fatal(err)
		}
		build += cpuTime() - c1
		add += c1 - c0
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(a.Model().Covisit().Len()), "pairs")
	}
	b.ReportMetric(float64(add.Nanoseconds())/float64(b.N*n), "add-cpu-ns/event")
	b.ReportMetric(float64(build.Nanoseconds())/float64(b.N*n), "build-cpu-ns/event")
}
