package archive

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestArchiveYieldHoldsMicroBatches: Deps.Yield runs before every
// micro-batch and holds the archive while it blocks (dev holds it while the
// speed layer is behind); once released, the archive catches up exactly.
func TestArchiveYieldHoldsMicroBatches(t *testing.T) {
	b := startBroker(t)
	cfg := testConfig(t, b)
	lake := openLake(t, cfg)
	recs := stream(t, 3000, 7)
	produce(t, b, recs)

	var calls atomic.Int64
	release := make(chan struct{})
	a, err := New(cfg, Deps{Log: testLogger(t), Yield: func(ctx context.Context) {
		calls.Add(1)
		select {
		case <-release:
		case <-ctx.Done():
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	waitFor(t, 30*time.Second, "the first yield", func() bool { return calls.Load() >= 1 })
	time.Sleep(300 * time.Millisecond) // held: nothing may be committed meanwhile
	if got := boundary(t, lake, b.topic); len(got) != 0 {
		t.Fatalf("archived %v while held", got)
	}
	close(release)
	waitFor(t, time.Minute, "the records archived", func() bool { return covered(boundary(t, lake, b.topic), highWatermarks(recs)) })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	done <- nil // for the cleanup
	checkArchive(t, lake, b, recs)
	// 3,000 records in micro-batches of at most 500 (testConfig): a yield
	// before each.
	if n := calls.Load(); n < 6 {
		t.Errorf("Yield called %d times, want one per micro-batch (>= 6)", n)
	}
}
