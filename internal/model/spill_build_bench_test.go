package model

import (
	"hash/fnv"
	"os"
	"runtime/debug"
	"strconv"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/generate"
)

// BenchmarkSpillBuild is the build phase of a full recompute in parts at the
// size `lambdarec bench batch` runs it: BENCH_SPILL_EVENTS generated events
// (default 2M, drawn by internal/generate as `bench batch` draws them: 5,000
// items, 20,000 users, 6 partitions) spilled to BENCH_SPILL_PARTS parts (default: a part per 1M
// events, as batch.max_memory's default makes them), then built part by
// part. The events are generated straight into the spill (not held), so 10M
// fits, and spilled as the batch's page scan spills them: in chunks of
// 4,096 rows, a session repeated in its chunk as a reference to its earlier
// record (Spill.AddChunkRow); only Spill.Build is timed: its wall and CPU
// time (process user+sys) per event.
func BenchmarkSpillBuild(b *testing.B) {
	n := envInt(b, "BENCH_SPILL_EVENTS", 2_000_000)
	parts := envInt(b, "BENCH_SPILL_PARTS", max(1, n/1_000_000))
	// As `lambdarec batch` does for the 1 GiB default bound.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(7 << 27))
	b.ReportAllocs()
	var wall, cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		a, err := NewAccumulator(DefaultParams())
		if err != nil {
			b.Fatal(err)
		}
		s, err := a.Spill(b.TempDir(), parts)
		if err != nil {
			b.Fatal(err)
		}
		genBatchEvents(n, chunkRows(s, 4096))
		b.StartTimer()
		w0, c0 := time.Now(), cpuTime()
		if err := s.Build(nil); err != nil {
			b.Fatal(err)
		}
		m := a.Model()
		wall += time.Since(w0)
		cpu += cpuTime() - c0
		b.StopTimer()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(m.Covisit().Len()), "pairs")
		b.StartTimer()
	}
	b.ReportMetric(float64(wall.Nanoseconds())/float64(b.N*n), "build-wall-ns/event")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "build-cpu-ns/event")
}

// genBatchEvents yields n events of internal/generate's default stream (seed
// 1), partitioned by session key over 6 partitions.
func genBatchEvents(n int, yield func(Event)) {
	g, err := generate.New(generate.Config{Seed: 1, Start: time.UnixMilli(1_700_000_000_000)})
	if err != nil {
		panic(err)
	}
	var next [6]int64
	for range n {
		r := g.Next()
		for r.Malformed {
			r = g.Next()
		}
		h := fnv.New32a()
		h.Write(r.Key)
		p := h.Sum32() % 6
		yield(EventFromProto(r.Event, int32(p), next[p]))
		next[p]++
	}
}

func envInt(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// BenchmarkBuildGenerated is one part's build (Builder.Build) of 1M events
// of the generated stream: the unit the build phase repeats per part. Only
// Build is timed; it reports its CPU time per event.
func BenchmarkBuildGenerated(b *testing.B) {
	evs := make([]Event, 0, 1_000_000)
	genBatchEvents(cap(evs), func(e Event) { evs = append(evs, e) })
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		bl, err := NewBuilder(DefaultParams())
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range evs {
			bl.Add(e)
		}
		b.StartTimer()
		c0 := cpuTime()
		m := bl.Build()
		cpu += cpuTime() - c0
		b.StopTimer()
		b.ReportMetric(float64(m.Covisit().Len()), "pairs")
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*len(evs)), "build-cpu-ns/event")
}
