package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lambdarec/lambdarec/internal/config"
)

// TestSpeedFirstHolds: a role yielding to the speed layer does not wait
// while the layer keeps up, waits while it is behind until it has caught
// up, never longer than its bound, and the waits are counted.
func TestSpeedFirstHolds(t *testing.T) {
	var lag atomic.Int64
	reg := prometheus.NewRegistry()
	g, err := newSpeedFirst(lag.Load, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	g.poll = time.Millisecond
	ctx := context.Background()

	// Keeping up (or unknown before the first poll): no wait at all.
	for _, l := range []int64{-1, 0, yieldHoldFrom - 1} {
		lag.Store(l)
		if d := g.hold(ctx, "archive", time.Hour); d != 0 {
			t.Errorf("lag %d: held %s", l, d)
		}
	}

	// Behind: held until the lag is below yieldResumeBelow, not before.
	lag.Store(yieldHoldFrom)
	var caughtUp atomic.Bool
	go func() {
		time.Sleep(50 * time.Millisecond)
		lag.Store(yieldResumeBelow) // still behind: the hold goes on
		time.Sleep(50 * time.Millisecond)
		caughtUp.Store(true)
		lag.Store(yieldResumeBelow - 1)
	}()
	if d := g.hold(ctx, "archive", time.Hour); d <= 0 || !caughtUp.Load() {
		t.Fatalf("held %s, returned before the speed layer caught up: %v", d, !caughtUp.Load())
	}

	// Still behind: the hold ends at its bound.
	lag.Store(yieldHoldFrom * 10)
	if d := g.hold(ctx, "batch", 100*time.Millisecond); d < 100*time.Millisecond || d > 30*time.Second {
		t.Fatalf("held %s, want its bound of 100ms", d)
	}
	// And when the role stops.
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(20*time.Millisecond, cancel)
	if d := g.hold(cctx, "batch", time.Hour); d > 30*time.Second {
		t.Fatalf("held %s after the context ended", d)
	}

	for _, role := range []string{"archive", "batch"} {
		if s := testutil.ToFloat64(g.held.WithLabelValues(role)); s <= 0 {
			t.Errorf("lambdarec_dev_yield_seconds_total{role=%q} = %g", role, s)
		}
	}
}

// TestDevConfigMaxViewDelay: dev raises speed.max_view_delay's default
// (devMaxViewDelay, dev.go) and keeps any other value it is given.
func TestDevConfigMaxViewDelay(t *testing.T) {
	o := devOptions{dataDir: t.TempDir(), rate: 1, batchEvery: time.Minute}
	cfg, err := devConfig(config.Default(), o)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Speed.MaxViewDelay != devMaxViewDelay {
		t.Errorf("dev's max_view_delay %s, want %s", cfg.Speed.MaxViewDelay, devMaxViewDelay)
	}
	in := config.Default()
	in.Speed.MaxViewDelay = 20 * time.Millisecond
	if cfg, err = devConfig(in, o); err != nil {
		t.Fatal(err)
	}
	if cfg.Speed.MaxViewDelay != 20*time.Millisecond {
		t.Errorf("a configured max_view_delay became %s", cfg.Speed.MaxViewDelay)
	}
}
