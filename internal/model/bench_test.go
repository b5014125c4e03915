package model

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/schemas"
)

// benchEvents returns n synthetic events in log order: sessions of about 8
// events over a Zipf-distributed catalog of 50,000 items, 6 partitions, 1%
// duplicates, some late events.
func benchEvents(n int) []Event {
	out := make([]Event, 0, n)
	genEvents(n, func(e Event) { out = append(out, e) })
	return out
}

// genEvents generates the events of benchEvents one by one.
func genEvents(n int, yield func(Event)) {
	r := rand.New(rand.NewPCG(1, 1))
	zipf := rand.NewZipf(r, 1.1, 8, 49_999)
	items := make([]string, 50_000)
	for i := range items {
		items[i] = fmt.Sprintf("item-%05d", i)
	}
	kinds := func() schemas.Kind {
		switch x := r.IntN(100); {
		case x < 70:
			return schemas.KindPageView
		case x < 90:
			return schemas.KindProductClick
		case x < 97:
			return schemas.KindAddToCart
		}
		return schemas.KindPurchase
	}
	type sess struct {
		id, user string
		part     int32
		t        int64
		left     int
		last     Event
	}
	var live []*sess
	next := make([]int64, 6)
	ns, count := 0, 0
	for count < n {
		if len(live) < 1000 {
			ns++
			live = append(live, &sess{id: fmt.Sprintf("session-%08d", ns), user: fmt.Sprintf("user-%07d", r.IntN(n/20+1)),
				part: int32(r.IntN(6)), t: 1_700_000_000_000_000 + int64(ns)*1000, left: 1 + r.IntN(15)})
		}
		i := r.IntN(len(live))
		s := live[i]
		e := s.last
		if e.EventID == "" || r.IntN(100) != 0 {
			s.t += r.Int64N(int64(3 * time.Minute / time.Microsecond))
			t := s.t
			if r.IntN(50) == 0 {
				t -= int64(20 * time.Minute / time.Microsecond)
			}
			e = Event{EventID: fmt.Sprintf("ev-%09d", count), SessionID: s.id, UserID: s.user,
				ItemID: items[zipf.Uint64()], Kind: kinds(), Time: t, Partition: s.part}
			s.last = e
			s.left--
		}
		e.Offset = next[s.part]
		next[s.part]++
		yield(e)
		count++
		if s.left <= 0 {
			live[i] = live[len(live)-1]
			live = live[:len(live)-1]
		}
	}
}

// cpuTime returns the process's user+system CPU time. On this shared
// machine wall time swings with other work; CPU time per event is the stable
// figure, reported beside ns/op.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// perEvent reports wall and CPU nanoseconds per unit.
func perEvent(b *testing.B, cpu0 time.Duration, units int, unit string) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*units), "ns/"+unit)
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*units), "cpu-ns/"+unit)
}

var (
	benchOnce sync.Once
	bench1M   []Event
	benchM    *Model
)

func benchData(b *testing.B) ([]Event, *Model) {
	b.Helper()
	benchOnce.Do(func() {
		bench1M = benchEvents(1_000_000)
		benchM, _ = Recompute(DefaultParams(), bench1M)
	})
	return bench1M, benchM
}

// BenchmarkBuild is the batch recompute: 1M events in, model out.
func BenchmarkBuild(b *testing.B) {
	evs, _ := benchData(b)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		bl, _ := NewBuilder(DefaultParams())
		for _, e := range evs {
			bl.Add(e)
		}
		m := bl.Build()
		if m.Stats.Accepted == 0 {
			b.Fatal("nothing built")
		}
	}
	perEvent(b, cpu0, len(evs), "event")
}

// BenchmarkApply is the speed layer's per-event work: session update and
// delta aggregation, event by event.
func BenchmarkApply(b *testing.B) {
	evs, _ := benchData(b)
	evs = evs[:200_000]
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for b.Loop() {
		m, _ := New(DefaultParams())
		sessions := make(map[string]*Session)
		for _, e := range evs {
			s := sessions[e.SessionID]
			if s == nil {
				s = NewSession(e.SessionID)
				sessions[e.SessionID] = s
			}
			m.Apply(s, e)
		}
	}
	perEvent(b, cpu0, len(evs), "event")
}

// BenchmarkRowsTopK extracts the top 50 neighbours of every item (what the
// batch view publishes).
func BenchmarkRowsTopK(b *testing.B) {
	_, m := benchData(b)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	items := 0
	for b.Loop() {
		items = 0
		for range m.Covisit().Rows(50) {
			items++
		}
	}
	perEvent(b, cpu0, items, "item")
}

// BenchmarkScoreSession scores a session of 10 recent items, selecting each
// row's top 50 from the full rows of the 1M-event model.
func BenchmarkScoreSession(b *testing.B) {
	evs, m := benchData(b)
	benchScore(b, evs, m)
}

// BenchmarkScoreSessionCached is BenchmarkScoreSession on a model with
// CacheTopK(50), as a batch model serving many scorings would be.
func BenchmarkScoreSessionCached(b *testing.B) {
	evs, m := benchData(b)
	cached, _ := Recompute(DefaultParams(), evs)
	cached.Covisit().CacheTopK(50)
	if !cached.Equal(m) {
		b.Fatal("recompute differs")
	}
	benchScore(b, evs, cached)
}

func benchScore(b *testing.B, evs []Event, m *Model) {
	sc, _ := NewScorer(DefaultParams())
	benchScoreWith(b, evs, func(recent []string) []Scored { return sc.Score(m, recent, nil, 20) })
}

// benchScoreWith runs score on 64 recents of 10 items taken from evs.
func benchScoreWith(b *testing.B, evs []Event, score func(recent []string) []Scored) {
	var recent [][]string
	for i := 0; len(recent) < 64; i += 997 {
		var r []string
		for j := i; j < i+40 && len(r) < 10; j++ {
			r = append(r, evs[j].ItemID)
		}
		recent = append(recent, r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	i := 0
	for b.Loop() {
		score(recent[i%len(recent)])
		i++
	}
	perEvent(b, cpu0, 1, "op")
}

// BenchmarkBuild10M builds the model of 10M generated events (streamed into
// the Builder, as the batch layer does) and reports the peak Go heap.
func BenchmarkBuild10M(b *testing.B) {
	const n = 10_000_000
	b.ReportAllocs()
	var peak uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	var gen, build time.Duration
	for b.Loop() {
		bl, _ := NewBuilder(DefaultParams())
		t0 := time.Now()
		genEvents(n, bl.Add) // generation and Add interleaved
		gen += time.Since(t0)
		t1 := time.Now()
		m := bl.Build()
		build += time.Since(t1)
		b.ReportMetric(float64(m.Covisit().Len()), "pairs")
	}
	close(stop)
	<-done
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(build.Nanoseconds())/float64(b.N*n), "build-ns/event")
	b.ReportMetric(float64(gen.Nanoseconds())/float64(b.N*n), "gen+add-ns/event")
}
