package store_test

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// BenchmarkMemoryGC is what the memory store's session views cost the
// garbage collector: 100,000 views held (20 items and an explanation each,
// as the speed layer writes them), one forced collection per op.
// gc-cpu-ms/op is the collector's CPU time per collection (runtime/metrics
// /cpu/classes/gc/total), scan-heap-MB the heap it scans (/gc/scan/heap),
// heap-MB the live heap, est-bytes/view the store's estimate of a view
// (SessionBytes, what its bound counts); the views' item ids come from a shared pool of
// 5,000, as the speed layer's do.
func BenchmarkMemoryGC(b *testing.B) {
	ctx := context.Background()
	m := store.NewMemory(store.MemorySessionBytes(1 << 30))
	items := make([]string, 5000)
	for i := range items {
		items[i] = fmt.Sprintf("item-%06d", i)
	}
	exp := benchExplanation(items)
	const sessions = 100_032 // 1,563 batches of 64
	views := make([]store.SessionView, 64)
	for n := 0; n < sessions; n += len(views) {
		for j := range views {
			k := n + j
			v := &views[j]
			*v = store.SessionView{SessionID: fmt.Sprintf("session-%07d", k), UserID: fmt.Sprintf("user-%06d", k/3),
				Offset: int64(k), EventTime: time.Unix(int64(k), 0), UpdatedAt: time.Unix(int64(k), 0), Items: v.Items[:0], Explanation: exp}
			for i := range 20 {
				v.Items = append(v.Items, store.Scored{Item: items[(k*7+i)%len(items)], Score: float64(20 - i)})
			}
		}
		if err := m.UpsertSessions(ctx, views); err != nil {
			b.Fatal(err)
		}
	}
	held, est, _ := m.SessionUsage()
	if held != sessions {
		b.Fatalf("%d views held, want %d", held, sessions)
	}
	samples := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/gc/scan/heap:bytes"}, {Name: "/gc/heap/live:bytes"}}
	runtime.GC()
	metrics.Read(samples)
	gc0 := samples[0].Value.Float64()
	b.ResetTimer()
	for b.Loop() {
		runtime.GC()
	}
	b.StopTimer()
	metrics.Read(samples)
	b.ReportMetric((samples[0].Value.Float64()-gc0)*1e3/float64(b.N), "gc-cpu-ms/op")
	b.ReportMetric(float64(samples[1].Value.Uint64())/1e6, "scan-heap-MB")
	b.ReportMetric(float64(samples[2].Value.Uint64())/1e6, "heap-MB")
	b.ReportMetric(float64(est)/sessions, "est-bytes/view")
	runtime.KeepAlive(m)
}
