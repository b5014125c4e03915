package storetest

import (
	"fmt"
	"testing"

	"github.com/lambdarec/lambdarec/internal/store"
)

// Bench sizes: a batch view of benchItems items and benchItems users with
// benchWidth entries each, and benchSessions sessions.
const (
	benchItems    = 2_000
	benchWidth    = 50
	benchSessions = 10_000
	benchK        = 20
)

// Bench measures a backend's hot paths: batch-view reads (Similar, UserRecs,
// Popular) once the view is warm, session reads, and UpsertSessions
// throughput in batches of 1000 (reported as sessions/s).
func Bench(b *testing.B, newStore func(b *testing.B) store.Store) {
	s := newStore(b)
	b.Cleanup(func() { _ = s.Close() })
	v := genBatch(1, benchItems, benchWidth)
	if err := s.PublishBatch(b.Context(), v); err != nil {
		b.Fatalf("PublishBatch: %v", err)
	}
	sessions := make([]store.SessionView, benchSessions)
	for i := range sessions {
		sessions[i] = session(fmt.Sprintf("bench-%d", i), int64(i))
	}
	if err := s.UpsertSessions(b.Context(), sessions); err != nil {
		b.Fatalf("UpsertSessions: %v", err)
	}
	items := make([]string, benchItems)
	users := make([]string, benchItems)
	for i := range items {
		items[i] = fmt.Sprintf("item-%d", i)
		users[i] = fmt.Sprintf("user-%d", i)
	}
	// Warm: read every key once, so cached backends measure their cache.
	for i := range items {
		if _, err := s.Similar(b.Context(), items[i], benchK); err != nil {
			b.Fatal(err)
		}
		if _, err := s.UserRecs(b.Context(), users[i], benchK); err != nil {
			b.Fatal(err)
		}
	}

	read := func(name string, fn func(i int) (int, error)) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					n, err := fn(i)
					if err != nil {
						b.Error(err)
						return
					}
					if n == 0 {
						b.Errorf("%s: empty answer", name)
						return
					}
					i += 7919 // a prime stride spreads keys over shards
				}
			})
		})
	}
	read("Similar", func(i int) (int, error) {
		got, err := s.Similar(b.Context(), items[i%benchItems], benchK)
		return len(got), err
	})
	read("UserRecs", func(i int) (int, error) {
		got, err := s.UserRecs(b.Context(), users[i%benchItems], benchK)
		return len(got), err
	})
	read("Popular", func(i int) (int, error) {
		got, err := s.Popular(b.Context(), benchK)
		return len(got), err
	})
	read("Session", func(i int) (int, error) {
		got, ok, err := s.Session(b.Context(), sessions[i%benchSessions].SessionID)
		if !ok {
			return 0, err
		}
		return len(got.Items), err
	})

	b.Run("UpsertSessions", func(b *testing.B) {
		b.ReportAllocs()
		const per = 1000
		batch := make([]store.SessionView, per)
		off := int64(benchSessions)
		n := 0
		for b.Loop() {
			for j := range batch {
				off++
				batch[j] = sessions[(n+j)%benchSessions]
				batch[j].Offset = off
			}
			n += per
			if err := s.UpsertSessions(b.Context(), batch); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "sessions/s")
	})
}

// BenchPublish measures PublishBatch of a view of 5,000 items and 12,000
// users with 50 entries each (about what 200,000 generated events give),
// without and with the users' items (BatchView.UserItems, 10 each): the
// cost of publishing what explains batch recommendations. Each iteration
// publishes a new batch id; ns/op is one whole publish.
func BenchPublish(b *testing.B, newStore func(b *testing.B) store.Store) {
	const items, users, recent = 5_000, 12_000, 10
	v := genBatch(1, items, benchWidth)
	v.UserRecs = make(map[string][]store.Scored, users)
	userItems := make(map[string][]string, users)
	for u := range users {
		v.UserRecs[fmt.Sprintf("user-%d", u)] = v.Neighbors[fmt.Sprintf("item-%d", u%items)]
		in := make([]string, recent)
		for j := range in {
			in[j] = fmt.Sprintf("item-%d", (u*7+j)%items)
		}
		userItems[fmt.Sprintf("user-%d", u)] = in
	}
	for _, with := range []bool{false, true} {
		name := "without_user_items"
		if with {
			name = "with_user_items"
		}
		b.Run(name, func(b *testing.B) {
			s := newStore(b)
			b.Cleanup(func() { _ = s.Close() })
			for i := range b.N {
				c := *v
				c.Meta.BatchID = fmt.Sprintf("%s-%d", name, i)
				c.UserItems = nil
				if with {
					c.UserItems = userItems
				}
				if err := s.PublishBatch(b.Context(), &c); err != nil {
					b.Fatalf("PublishBatch: %v", err)
				}
			}
		})
	}
}
