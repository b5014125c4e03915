package speed

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/clickhouse"
	"github.com/lambdarec/lambdarec/internal/store/clickhousetest"
	"github.com/lambdarec/lambdarec/internal/store/redis"
	"github.com/lambdarec/lambdarec/internal/store/redis/redistest"
	"github.com/lambdarec/lambdarec/serving"
)

// TestStoredExplanationsServeStandalone is the production topology: a speed
// layer (kfake over TCP) writes its views to Redis, or to ClickHouse (or
// to the memory store, which must copy the explanations: the layer reuses
// the bytes it encoded them in once they are written), and a
// serving API in front of the same store, with no speed layer of its own
// (no in-process explainer), explains every live session's items from what
// the layer stored. Every item of every view must be explained; its
// contributions must add up, in order, to its score bit for bit, and be
// exactly what the layer's in-process explanation (what dev shows) gives
// for the same session and items.
func TestStoredExplanationsServeStandalone(t *testing.T) {
	ctx := context.Background()
	backends := []struct {
		name string
		open func(t *testing.T) store.Store
	}{
		{"memory", func(t *testing.T) store.Store { return store.NewMemory() }}, // it copies the explanations the layer reuses (itemArena)
		{"redis", func(t *testing.T) store.Store {
			st, err := redis.New(ctx, redis.Config{Addr: redistest.Addr(t), Prefix: redistest.Prefix(t)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}},
		{"clickhouse", func(t *testing.T) store.Store {
			st, err := clickhouse.New(ctx, clickhouse.Config{DSN: clickhousetest.DSN(t)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			st := be.open(t)
			defer st.Close()
			tt := newTestTopic(t, 3)
			r := rand.New(rand.NewPCG(3, 5))
			src := &fakeSource{}
			p := model.DefaultParams()
			l := startLayer(t, tt, src, st, nil)
			g := newStreamGen(r, time.Now().Add(-time.Hour))
			tt.produce(g.batch(1500))
			evs, _ := tt.decoded()
			src.publish(batchOf(t, "b1", p, evs, randomBoundary(r, model.Boundary{}, tt.endOffsets())))
			tt.produce(g.batch(800))
			waitServed(t, tt, "b1", l)
			// More records a few at a time, once the views read their rows:
			// entries enter rows already read (their batch counts are cached
			// as they enter, see itemRow.bat).
			for range 4 {
				tt.produce(g.batch(200))
				waitServed(t, tt, "b1", l)
			}

			api, err := serving.NewAPI(serving.APIConfig{Model: p, MaxK: 100}, serving.APIDeps{Store: st})
			if err != nil {
				t.Fatal(err)
			}
			var items, contributions, withSpeed, withBatch int
			// check explains every live session's served items; it returns
			// the first difference (the layer may still be writing views).
			check := func() error {
				items, contributions, withSpeed, withBatch = 0, 0, 0, 0
				for _, id := range l.LiveSessions() {
					ans, err := api.Recommendations(ctx, serving.RecommendationsRequest{SessionID: id, K: 20, Explain: true})
					if err != nil {
						return err
					}
					names := make([]string, len(ans.Items))
					for i, it := range ans.Items {
						if it.Source != serving.SourceSpeed {
							return fmt.Errorf("session %s item %s: source %s", id, it.Item, it.Source)
						}
						names[i] = it.Item
					}
					recent, exp, ok := l.ExplainSession(id, names)
					if !ok || len(names) > 0 && len(recent) == 0 {
						return fmt.Errorf("session %s: not explained in process", id)
					}
					for i, it := range ans.Items {
						e := it.Explanation
						if e == nil || e.Unavailable != "" || e.Score == nil || *e.Score != it.Score {
							return fmt.Errorf("session %s item %s (score %v): explanation %+v", id, it.Item, it.Score, e)
						}
						var sum float64
						for _, c := range e.From {
							sum += c.Value
						}
						if sum != it.Score {
							return fmt.Errorf("session %s item %s: contributions add up to %v, score %v", id, it.Item, sum, it.Score)
						}
						want := make([]serving.Contribution, len(exp[i]))
						for k, c := range exp[i] {
							want[k] = serving.Contribution{Item: c.Recent, Rank: c.Rank, RankWeight: c.RankWeight,
								BatchCount: c.BatchCount, SpeedCount: c.Count - c.BatchCount, TopCount: c.TopCount, Value: c.Value}
						}
						if !slices.Equal(e.From, want) {
							return fmt.Errorf("session %s item %s: stored explanation\n%+v\nin process\n%+v", id, it.Item, e.From, want)
						}
						for _, c := range e.From {
							if c.SpeedCount > 0 {
								withSpeed++
							}
							if c.BatchCount > 0 {
								withBatch++
							}
						}
						items++
						contributions += len(e.From)
					}
				}
				return nil
			}
			deadline := time.Now().Add(60 * time.Second)
			for {
				err := check()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal(err)
				}
				time.Sleep(200 * time.Millisecond)
			}
			if items < 500 || withSpeed == 0 || withBatch == 0 {
				t.Fatalf("test too weak: %d items, %d contributions with speed counts, %d with batch counts", items, withSpeed, withBatch)
			}
			t.Logf("%d live sessions, %d items, %d contributions (%d with speed counts, %d with batch counts): all stored explanations exact",
				len(l.LiveSessions()), items, contributions, withSpeed, withBatch)
		})
	}
}

// With speed.explanations off, views are written without one, and a
// standalone serve says why their items are not explained.
func TestViewsWithoutExplanations(t *testing.T) {
	ctx := context.Background()
	tt := newTestTopic(t, 2)
	st := store.NewMemory()
	l := startLayer(t, tt, nil, st, func(c *Config) { c.NoExplanations = true })
	g := newStreamGen(rand.New(rand.NewPCG(9, 9)), time.Now().Add(-time.Hour))
	tt.produce(g.batch(300))
	ends := tt.endOffsets()
	waitFor(t, 20*time.Second, "the layer to catch up", func() bool { return caughtUp(l.Positions(), ends) })
	api, err := serving.NewAPI(serving.APIConfig{Model: model.DefaultParams(), MaxK: 100}, serving.APIDeps{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	waitFor(t, 20*time.Second, "views of the live sessions", func() bool {
		checked = 0
		for _, id := range l.LiveSessions() {
			v, ok, err := st.ExplainedSession(ctx, id)
			if err != nil || !ok {
				return false
			}
			if v.Explanation != nil {
				t.Fatalf("session %s: explanation written with speed.explanations off", id)
			}
			ans, err := api.Recommendations(ctx, serving.RecommendationsRequest{SessionID: id, K: 5, Explain: true})
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range ans.Items {
				if it.Explanation == nil || it.Explanation.Unavailable == "" {
					t.Fatalf("session %s item %+v: explained without a stored explanation", id, it)
				}
				checked++
			}
		}
		return checked > 20
	})
}
