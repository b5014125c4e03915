package speed

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/readscore"
	"github.com/lambdarec/lambdarec/internal/store"
)

// BenchmarkScoreRecent is one read-time scoring (Layer.ScoreRecent) on an
// idle layer (no poll in progress: the lock is free) holding a batch over
// the first half of the bench stream and the deltas of the second: ns,
// allocs per read of a live session's recent items and purchases. The
// metrics are registered; no Kafka (the layer is ready as Run would make
// it). views=unscored: the layer's views were not scored
// (Config.NoViewScores), so no flush materialized the rows a read reads:
// the reads materialize them (the first read of a row), as on a member
// with speed.score_views false.
func BenchmarkScoreRecent(b *testing.B) {
	for _, c := range []struct{ explain, unscored bool }{{true, false}, {false, false}, {true, true}} {
		name := fmt.Sprintf("explain=%v", c.explain)
		if c.unscored {
			name += ",views=unscored"
		}
		explain := c.explain
		b.Run(name, func(b *testing.B) {
			recs := benchStream(b)[:100_000]
			batch := batchTo(b, "bench", recs, 0.5)
			l, err := New(Config{Brokers: []string{"unused:9092"}, Topic: "t", Group: "g", NoExplanations: !explain, NoViewScores: c.unscored}, Deps{Views: store.NewMemory()})
			if err != nil {
				b.Fatal(err)
			}
			lim := l.proc.lim
			l.proc = ownedProcessor(b, lim, batch)
			served := "bench"
			l.served.Store(&served)
			ts := time.Now()
			for _, r := range recs {
				if _, err := l.proc.record(r.part, r.off, ts, r.value); err != nil {
					b.Fatal(err)
				}
			}
			l.proc.appendViews(nil, ts)
			l.cl = new(kgo.Client) // running: only its presence is read
			l.ready.Store(true)
			var reqs []readscore.Request
			for _, ps := range l.proc.parts {
				for s := ps.live.head; s != nil && len(reqs) < 4096; s = s.next {
					reqs = append(reqs, readRequest(l.proc, s))
				}
			}
			ctx := context.Background()
			items := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				res, err := l.ScoreRecent(ctx, reqs[i%len(reqs)])
				if err != nil {
					b.Fatal(err)
				}
				items += len(res.Items)
			}
			b.ReportMetric(float64(items)/float64(b.N), "items/op")
		})
	}
}

// benchReads reads sessions at read time while BenchmarkLatency's records
// flow: SPEED_BENCH_READS=N reads a second (0 or unset: none), each of 5
// random items of the stream's catalogue, timed from the call to the
// answer (the wait for the consuming loop's safe point included).
type benchReads struct {
	done     chan struct{}
	wg       sync.WaitGroup
	lat      []float64 // ms
	notReady int
}

func startBenchReads(b *testing.B, l *Layer) *benchReads {
	r := &benchReads{done: make(chan struct{})}
	v := os.Getenv("SPEED_BENCH_READS")
	if v == "" || v == "0" {
		return r
	}
	rate, err := strconv.Atoi(v)
	if err != nil || rate < 1 {
		b.Fatalf("SPEED_BENCH_READS=%q: want a rate ≥ 1", v)
	}
	r.wg.Go(func() {
		rng := rand.New(rand.NewPCG(1, 2))
		t := time.NewTicker(time.Second / time.Duration(rate))
		defer t.Stop()
		for {
			select {
			case <-r.done:
				return
			case <-t.C:
			}
			req := readscore.Request{}
			for range 5 {
				req.Recent = append(req.Recent, fmt.Sprintf("i%05d", rng.IntN(5000)))
			}
			t0 := time.Now()
			_, err := l.ScoreRecent(context.Background(), req)
			if errors.Is(err, readscore.ErrNotReady) {
				r.notReady++
				continue
			}
			if err != nil {
				b.Error(err)
				return
			}
			r.lat = append(r.lat, float64(time.Since(t0).Nanoseconds())/1e6)
		}
	})
	return r
}

// stop ends the reads and reports their latency.
func (r *benchReads) stop(b *testing.B) {
	close(r.done)
	r.wg.Wait()
	if len(r.lat) == 0 {
		return
	}
	slices.Sort(r.lat)
	q := func(f float64) float64 { return r.lat[int(f*float64(len(r.lat)-1))] }
	b.ReportMetric(float64(len(r.lat)), "reads")
	b.ReportMetric(float64(r.notReady), "reads_not_ready")
	b.ReportMetric(q(0.5), "read_p50_ms")
	b.ReportMetric(q(0.99), "read_p99_ms")
	b.ReportMetric(r.lat[len(r.lat)-1], "read_max_ms")
}
