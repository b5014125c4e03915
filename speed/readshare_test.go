package speed

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/readscore"
)

// readLayer is a layer that never connects, over a processor owning
// benchParts partitions serving a batch of the first part of recs, ready to
// score reads; its polls are fed by poll.
func readLayer(t *testing.T, recs []benchRecord) *Layer {
	t.Helper()
	l := newTestLayer(t)
	lim := defaultLimits()
	lim.viewItems = 20
	l.proc = ownedProcessor(t, lim, batchTo(t, "b", recs, 0.3))
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	l.cl = cl
	l.ready.Store(true)
	return l
}

// testPoll processes recs as one poll, holding the layer's lock as the
// consuming loop does, and scores and writes its views. seq (when not nil)
// is odd while the records are applied, the lock held.
func (l *Layer) testPoll(t *testing.T, recs []benchRecord, seq *atomic.Int64) {
	t.Helper()
	krs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		krs[i] = &kgo.Record{Topic: "t", Partition: r.part, Offset: r.off, Value: r.value, Timestamp: time.Now()}
	}
	fs := kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "t", Partitions: []kgo.FetchPartition{{Partition: 0, Records: krs}}}}}}
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq != nil {
		seq.Add(1)
	}
	failed := l.process(context.Background(), fs)
	if seq != nil {
		seq.Add(1)
	}
	if failed {
		t.Fatal("poll reported a fetch error")
	}
	if err := l.flushNow(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
}

// TestScoreRecentConcurrentReads: many reads at once, while large polls are
// applied (their contributions queued and applied on both cores,
// applypar.go) and views written, each read answering without error — run
// with -race, it shows reads share the rows with each other and never with
// a change of them. Reads are served while a poll is applied, at its safe
// points (yieldToReads): planted bug, yieldToReads returning at once — no
// read answered within a poll (caught). After the stream, a read from
// several goroutines at once gives exactly the exclusive read's answer
// (the shared path mutates nothing, and reads the same rows).
func TestScoreRecentConcurrentReads(t *testing.T) {
	recs := genStream(t, 40_000, time.Now().Add(-70*time.Minute), 100)
	l := readLayer(t, recs[:12_000])
	l.testPoll(t, recs[:12_000], nil)
	var reqs []readscore.Request
	l.mu.Lock()
	for _, ps := range l.proc.parts {
		for s := ps.live.head; s != nil && len(reqs) < 200; s = s.next {
			reqs = append(reqs, readRequest(l.proc, s))
		}
	}
	l.mu.Unlock()
	for i := range 50 { // some items the layer has no row for yet, some no row knows
		reqs = append(reqs, readscore.Request{Recent: []string{fmt.Sprintf("i%05d", i*97), "never-seen", fmt.Sprintf("i%05d", i*31)}})
	}
	if len(reqs) < 100 {
		t.Fatalf("test too weak: %d requests", len(reqs))
	}

	const readers = 8
	var (
		stop      atomic.Bool
		pollSeq   atomic.Int64 // odd while a poll's records are applied
		reads     atomic.Int64
		midPoll   atomic.Int64
		wg        sync.WaitGroup
		firstErrs = make(chan error, readers)
	)
	for g := range readers {
		wg.Go(func() {
			for i := g; !stop.Load(); i++ {
				req := reqs[i%len(reqs)]
				p0 := pollSeq.Load()
				res, err := l.ScoreRecent(context.Background(), req)
				if err != nil {
					firstErrs <- fmt.Errorf("read %v: %w", req.Recent, err)
					return
				}
				if len(res.Items) > 20 {
					firstErrs <- fmt.Errorf("read %v: %d items, at most 20", req.Recent, len(res.Items))
					return
				}
				reads.Add(1)
				if p0%2 == 1 && pollSeq.Load() == p0 { // begun and answered within one poll
					midPoll.Add(1)
				}
			}
		})
	}
	for from := 12_000; from < len(recs); from += 7_000 {
		l.testPoll(t, recs[from:min(from+7_000, len(recs))], &pollSeq)
		time.Sleep(2 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	close(firstErrs)
	for err := range firstErrs {
		t.Fatal(err)
	}
	if reads.Load() < 100 {
		t.Fatalf("test too weak: %d reads", reads.Load())
	}
	if midPoll.Load() == 0 {
		t.Fatalf("no read of %d answered while a poll was applied", reads.Load())
	}
	t.Logf("%d reads, %d within a poll", reads.Load(), midPoll.Load())

	// The same reads from many goroutines at once, now that no record
	// flows, against the exclusive read's answers.
	want := make([]readscore.Result, len(reqs))
	rs := newReadScorer()
	l.mu.Lock()
	for i, req := range reqs {
		items, exp, err := rs.score(l.proc, req)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = readscore.Result{Items: items, Explanation: exp}
	}
	l.mu.Unlock()
	for g := range readers {
		wg.Go(func() {
			for i := range reqs {
				i = (i + g*31) % len(reqs)
				res, err := l.ScoreRecent(context.Background(), reqs[i])
				if err != nil {
					t.Error(err)
					return
				}
				if !slices.Equal(res.Items, want[i].Items) || !bytes.Equal(res.Explanation, want[i].Explanation) {
					t.Errorf("read %v: shared %v, exclusive %v", reqs[i].Recent, res.Items, want[i].Items)
					return
				}
			}
		})
	}
	wg.Wait()
}
