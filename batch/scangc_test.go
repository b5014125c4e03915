package batch

import (
	"context"
	"runtime/debug"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/model"
)

// gcPercent reads the collector's GOGC without changing it.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestScanGCPercentOnlyDuringSpilledScan: a full recompute in parts runs its
// scan at Config.ScanGCPercent and restores the collector's setting after it;
// an unset ScanGCPercent, or a recompute at once, leaves it alone; the model
// is the same either way.
func TestScanGCPercentOnlyDuringSpilledScan(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(137))
	ctx := context.Background()
	lake := testLake(t)
	offsets := lakehouse.Offsets{}
	recs := stream(t, 5, 3000, map[int32]int64{})
	archive(t, lake, recs, offsets)
	p := model.DefaultParams()
	want, err := model.Recompute(p, toModelEvents(recs))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		scanGC    int
		maxMemory int64
		during    int
	}{
		{"parts", 350, 900_000, 350},
		{"parts, unset", 0, 900_000, 137},
		{"at once", 350, 1 << 30, 137},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(Config{Lake: lake, Params: &p, TopK: 10, Progress: time.Hour, Full: true, Force: true,
				MaxMemory: tc.maxMemory, ScanGCPercent: tc.scanGC}, discard)
			if err != nil {
				t.Fatal(err)
			}
			if parts := r.parts(int64(len(recs))); (parts > 1) != (tc.maxMemory < 1<<30) {
				t.Fatalf("%d parts at max memory %d", parts, tc.maxMemory)
			}
			during := -1
			r.duringScan = func() { during = gcPercent() }
			res, err := r.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if during != tc.during {
				t.Fatalf("GOGC during the scan %d, want %d", during, tc.during)
			}
			if after := gcPercent(); after != 137 {
				t.Fatalf("GOGC after the run %d, want 137 (restored)", after)
			}
			if d := res.Model.Diff(want); d != "" {
				t.Fatalf("model differs from the recompute: %s", d)
			}
		})
	}
}
