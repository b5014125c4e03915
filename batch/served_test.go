package batch

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// TestPinRollbackUnpin: a rollback serves the previous batch to the store and
// to the loader the speed layer follows (its boundary); a run while pinned is
// recorded, not published, and the pinned views are kept past Retain; unpin
// serves the newest; a batch without views cannot be pinned.
func TestPinRollbackUnpin(t *testing.T) {
	ctx := context.Background()
	lake := testLake(t)
	p := model.DefaultParams()
	st := store.NewMemory()
	r, err := New(Config{Lake: lake, Params: &p, TopK: 5, Retain: 2, Store: st, Progress: time.Hour}, discard)
	if err != nil {
		t.Fatal(err)
	}
	l := NewLoader(lake, p)
	offsets, next := lakehouse.Offsets{}, map[int32]int64{}
	var runs []Run
	runBatch := func(seed int64) Run {
		t.Helper()
		archive(t, lake, stream(t, seed, 600, next), offsets)
		res, err := r.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, res.Run)
		return res.Run
	}
	served := func(wantID string, want Run) {
		t.Helper()
		if err := l.Publish(ctx, st, discard); err != nil {
			t.Fatal(err)
		}
		meta, ok, err := st.CurrentBatch(ctx)
		if err != nil || !ok || meta.BatchID != wantID || !maps.Equal(meta.Boundary, want.Boundary) {
			t.Fatalf("store serves %+v (%v, %v); want %s with boundary %v", meta, ok, err, wantID, want.Boundary)
		}
		loaded, err := l.Latest(ctx) // what the speed layer's batch source returns
		if err != nil || loaded == nil || loaded.Run.BatchID != want.BatchID || !maps.Equal(loaded.Run.Meta().Boundary, want.Boundary) {
			t.Fatalf("loader serves %+v, %v; want %s", loaded, err, want.BatchID)
		}
		if len(loaded.View.Popular) == 0 {
			t.Fatalf("batch %s loaded without its views", want.BatchID)
		}
	}
	b1 := runBatch(1)
	b2 := runBatch(2)
	served(b2.BatchID, b2)

	rolled, err := Rollback(ctx, lake, time.Now())
	if err != nil || rolled.BatchID != b1.BatchID {
		t.Fatalf("rollback to %s, %v; want %s", rolled.BatchID, err, b1.BatchID)
	}
	served(b1.BatchID+"~1", b1)
	if _, err := Rollback(ctx, lake, time.Now()); err == nil || !strings.Contains(err.Error(), "oldest") {
		t.Fatalf("rollback past the oldest batch: %v", err)
	}

	// Runs while pinned: recorded, not published; the pinned views stay.
	b3 := runBatch(3)
	b4 := runBatch(4)
	if meta, _, _ := st.CurrentBatch(ctx); meta.BatchID != b1.BatchID+"~1" {
		t.Fatalf("a run while pinned was published: %s", meta.BatchID)
	}
	served(b1.BatchID+"~1", b1)
	if kept, err := viewsKept(ctx, lake, b2.BatchID); err != nil || kept {
		t.Fatalf("views of %s (neither pinned nor among the newest 2) kept: %v, %v", b2.BatchID, kept, err)
	}
	if _, err := SetPin(ctx, lake, b2.BatchID, "pin", time.Now()); err == nil || !strings.Contains(err.Error(), "view tables were removed") {
		t.Fatalf("pin of a batch without views: %v", err)
	}
	if _, err := SetPin(ctx, lake, "nope", "pin", time.Now()); err == nil || !strings.Contains(err.Error(), "no such batch") {
		t.Fatalf("pin of an unknown batch: %v", err)
	}

	// Pin by id, then unpin: the newest is served.
	if _, err := SetPin(ctx, lake, b3.BatchID, "pin", time.Now()); err != nil {
		t.Fatal(err)
	}
	served(b3.BatchID+"~2", b3)
	if ok, err := Unpin(ctx, lake, time.Now()); err != nil || !ok {
		t.Fatalf("unpin: %v, %v", ok, err)
	}
	served(b4.BatchID+"~3", b4)
	if ok, err := Unpin(ctx, lake, time.Now()); err != nil || ok {
		t.Fatalf("second unpin: %v, %v", ok, err)
	}
	// A new run after the unpin is published under its own id.
	b5 := runBatch(5)
	served(b5.BatchID, b5)
}
