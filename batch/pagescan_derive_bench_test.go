package batch

import (
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/lambdarec/lambdarec/internal/generate"
)

// derivedChunk returns a chunk of pageScanRows generated events' string
// columns (the generator's mix of kinds and sessions), as a reader has it
// before derive.
func derivedChunk(tb testing.TB) *pageChunk {
	g, err := generate.New(generate.Config{Seed: 1, Start: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		tb.Fatal(err)
	}
	c := &pageChunk{n: pageScanRows, time: make([]int64, pageScanRows)}
	put := func(i int, v string) {
		c.bytes[i] = append(c.bytes[i], v...)
		c.ends[i] = append(c.ends[i], uint32(len(c.bytes[i])))
	}
	for r := 0; r < pageScanRows; {
		ev := g.Next()
		if ev.Malformed {
			continue
		}
		put(pcEventID, ev.Event.GetEventId())
		put(pcSession, ev.Event.GetSessionId())
		put(pcKind, ev.Event.Kind().String())
		c.time[r] = ev.Event.GetTimestamp().AsTime().UnixMicro()
		r++
	}
	return c
}

// BenchmarkPageChunkDerive is a reader's per-chunk derive (kinds, hashes,
// first rows of each session) of a chunk of generated events, per row (cpu-ns/row: the process's CPU, as BenchmarkScanIntern's).
func BenchmarkPageChunkDerive(b *testing.B) {
	c := derivedChunk(b)
	b.ReportAllocs()
	cpu0 := benchCPU()
	for b.Loop() {
		c.derive(arrow.Microsecond, true)
	}
	b.ReportMetric(float64(benchCPU()-cpu0)/float64(b.N*pageScanRows), "cpu-ns/row")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*pageScanRows), "ns/row")
}
