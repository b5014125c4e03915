package speed

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestFetchPoolClasses: a get has room for what it was asked (a snappy
// block's decoded length, n records), a slice put back serves a later get
// of its class and no larger one.
func TestFetchPoolClasses(t *testing.T) {
	var p fetchPool
	for _, n := range []int{1, 2, 3, 63, 64, 65, 1000, 4096, 4097} {
		rs := p.GetRecords(n)
		if cap(rs) < n || len(rs) != 0 {
			t.Fatalf("GetRecords(%d): len %d cap %d", n, len(rs), cap(rs))
		}
		p.PutRecords(rs[:cap(rs)])
	}
	src := s2.EncodeSnappy(nil, make([]byte, 70_000))
	b := p.GetDecompressBytes(src, kgo.CodecSnappy)
	if cap(b) < 70_000 || len(b) != 0 {
		t.Fatalf("GetDecompressBytes: len %d cap %d, want room for 70000", len(b), cap(b))
	}
	p.PutDecompressBytes(b[:cap(b)])
	reused := p.reused.Load()
	if b2 := p.GetDecompressBytes(src, kgo.CodecSnappy); cap(b2) != cap(b) || &b2[:1][0] != &b[:1][0] {
		t.Fatalf("a put buffer of the class was not used again (cap %d, was %d)", cap(b2), cap(b))
	}
	if p.reused.Load() != reused+1 {
		t.Fatalf("reused %d, want %d", p.reused.Load(), reused+1)
	}
	// In steady state a get and a put allocate nothing (not even a box).
	if allocs := testing.AllocsPerRun(100, func() {
		p.PutRecords(p.GetRecords(100))
		p.PutDecompressBytes(p.GetDecompressBytes(src, kgo.CodecSnappy))
	}); allocs > 0 {
		t.Fatalf("get and put: %v allocations, want 0", allocs)
	}
	// A class's slice never serves a larger request.
	small := p.GetRecords(10)
	p.PutRecords(small[:cap(small)])
	if big := p.GetRecords(cap(small) + 1); cap(big) < cap(small)+1 {
		t.Fatalf("GetRecords(%d) returned cap %d", cap(small)+1, cap(big))
	}
	// An odd capacity (a decoder's grown buffer) goes to the class it
	// fills, never to one it would not hold.
	p.PutDecompressBytes(make([]byte, 0, 3000))
	if got := p.GetDecompressBytes(s2.EncodeSnappy(nil, make([]byte, 4000)), kgo.CodecSnappy); cap(got) < 4000 {
		t.Fatalf("room for 4000 decoded bytes: cap %d", cap(got))
	}
	if got := p.GetDecompressBytes(make([]byte, 512), kgo.CodecGzip); cap(got) < 2048 {
		t.Fatalf("guess for 512 compressed bytes: cap %d", cap(got))
	}
}

// TestLayerRecyclesFetches: the layer hands its processed polls' batches
// back to the client's pool, so later fetches decode into slices already
// allocated, and it still processes every record (the exactness tests
// check what it computes with the pool in place).
func TestLayerRecyclesFetches(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) {
		tt := newTestTopicOn(t, kb, 2)
		views := store.NewMemory()
		l := startLayer(t, tt, nil, views, nil)
		g := newStreamGen(rand.New(rand.NewPCG(3, 9)), time.Now().Add(-time.Hour))
		for range 30 { // one batch at a time, each processed before the next is fetched
			tt.produce(g.batch(40))
			waitFor(t, 10*time.Second, "the layer to catch up", func() bool { return caughtUp(l.Positions(), tt.endOffsets()) })
		}
		gets, reused := l.fetchPool.gets.Load(), l.fetchPool.reused.Load()
		if gets == 0 || reused < gets/2 {
			t.Fatalf("fetch pool: %d gets, %d served by a recycled slice; want most of them", gets, reused)
		}
		t.Logf("fetch pool: %d gets, %d reused", gets, reused)
		if n := len(l.LiveSessions()); n == 0 {
			t.Fatal("no live session after 1,200 records")
		}
	})
}
