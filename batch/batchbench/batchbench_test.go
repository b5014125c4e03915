package batchbench

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"
)

// TestRunReportsEveryPhase runs the benchmark small, with a memory bound
// that puts the full runs in parts (spilled to local files): every phase is
// measured (wall, CPU, peak heap) over the rows it should have read, and the
// run after 10% more events is incremental.
func TestRunReportsEveryPhase(t *testing.T) {
	const events = 10_000
	var trace bytes.Buffer
	res, err := Run(context.Background(), Config{
		Trace:        &trace,
		Dir:          t.TempDir(),
		Events:       events,
		CommitEvents: 2_500,
		Rounds:       2,
		MaxMemory:    2 << 20, // 10k events × 256 B over 1 MiB: 3 parts
		Log:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if trace.Len() == 0 {
		t.Fatal("no execution trace of the first full run")
	}
	if len(res.Scans) != 2 || len(res.Batches) != 2 {
		t.Fatalf("%d scans, %d batch runs, want 2 of each", len(res.Scans), len(res.Batches))
	}
	for _, ph := range append(append([]Phase{}, res.Scans...), res.Batches...) {
		if ph.Wall <= 0 || ph.CPU <= 0 || ph.PeakHeap == 0 || ph.Rows != events {
			t.Fatalf("phase %+v: want positive wall, CPU and peak heap over %d rows", ph, events)
		}
	}
	if res.NewEvents != events/10 || res.Incremental.Rows != int64(res.NewEvents) || res.IncrementalRead < int64(res.NewEvents) {
		t.Fatalf("incremental run: %d new events, %d folded in, %d read", res.NewEvents, res.Incremental.Rows, res.IncrementalRead)
	}
	if res.ScanAfter.Rows != events+int64(res.NewEvents) {
		t.Fatalf("scan after: %d rows, want %d", res.ScanAfter.Rows, events+res.NewEvents)
	}
	if r := res.Ratio(); r <= 0 || res.CPURatio() <= 0 {
		t.Fatalf("ratios %v, %v", r, res.CPURatio())
	}
	// Each run reports its steps, which add up to no more than its wall and
	// CPU time, each with its peak heap (none above the run's).
	for _, tc := range []struct {
		ph   Phase
		want []string
	}{
		{res.Batches[0], []string{"prepare", "scan", "build", "view", "write", "commit", "cleanup"}},
		{res.Incremental, []string{"prepare", "compute", "view", "write", "commit", "cleanup"}},
	} {
		var names []string
		var sum, cpu time.Duration
		var peak, gcs uint64
		for _, s := range tc.ph.Steps {
			gcs += s.GCCycles
			names = append(names, s.Name)
			sum += s.Wall
			cpu += s.CPU
			if s.PeakHeap == 0 || s.CPU < 0 {
				t.Fatalf("step %+v: want a peak heap and a CPU time", s)
			}
			peak = max(peak, s.PeakHeap)
		}
		if !slices.Equal(names, tc.want) || sum > tc.ph.Wall {
			t.Fatalf("steps %s (%v in all, run %v), want %v", FormatSteps(tc.ph.Steps), sum, tc.ph.Wall, tc.want)
		}
		// Under a 1.5 MiB memory limit every run collects.
		if gcs == 0 {
			t.Fatalf("steps %s: no collection counted", FormatSteps(tc.ph.Steps))
		}
		if cpu <= 0 || cpu > tc.ph.CPU || peak > tc.ph.PeakHeap {
			t.Fatalf("steps %s: %v CPU in all (run %v), peak heap %d (run %d)", FormatSteps(tc.ph.Steps), cpu, tc.ph.CPU, peak, tc.ph.PeakHeap)
		}
	}
}
