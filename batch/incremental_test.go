package batch

import (
	"context"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/schemas"
)

// cutStream cuts recs at n-1 random points into n non-empty chunks.
func cutStream(rng *rand.Rand, recs []archived, n int) [][]archived {
	cuts := map[int]bool{}
	for len(cuts) < n-1 {
		cuts[1+rng.IntN(len(recs)-1)] = true
	}
	var out [][]archived
	lo := 0
	for _, c := range append(slices.Sorted(maps.Keys(cuts)), len(recs)) {
		out = append(out, recs[lo:c])
		lo = c
	}
	return out
}

// TestIncrementalRunsEqualFullRecompute archives one generated stream in
// chunks cut at random boundaries and runs an incremental batch after each:
// every run of the chain equals the recompute of the events so far, and the
// last equals a full run over the same snapshot — aggregates, stats and the
// published view. The stream has duplicate records (the generator re-emits
// records), late events (event times pushed back), rows archived out of
// offset order, sessions past the cap, and sessions straddling every boundary.
//
// Incremental runs persist only their deltas (a state chain, see state): the
// runs keep one batch (Retain 1), so clean-up must keep the chain's rows, and
// seed 2 bounds chains at 2 batches, so runs also write their whole state;
// after every run the persisted state read back equals the model.
func TestIncrementalRunsEqualFullRecompute(t *testing.T) {
	ctx := context.Background()
	var deltaRuns, wholeRuns int
	t.Cleanup(func() {
		if !t.Failed() && (deltaRuns == 0 || wholeRuns == 0) {
			t.Errorf("%d incremental runs wrote deltas, %d their whole state: want both", deltaRuns, wholeRuns)
		}
	})
	for _, seed := range []uint64{1, 2, 3} {
		t.Run("seed="+strconv.FormatUint(seed, 10), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 17))
			p := model.DefaultParams()
			p.MaxSessionEvents = 12 // sessions reach the cap, across boundaries too
			// Seed 3's events span days: the earlier records of continued
			// sessions are then found without reading every day.
			clock := 100.0
			if seed == 3 {
				clock = 0.02
			}
			recs := streamAt(t, int64(seed)+40, 5000, map[int32]int64{}, clock)
			chunks := cutStream(rng, recs, 6)
			lake := testLake(t)
			r, err := New(Config{Lake: lake, Params: &p, TopK: 10, Progress: time.Hour, Retain: 1}, discard)
			if err != nil {
				t.Fatal(err)
			}
			if seed == 2 {
				r.chainLen = 2
			}
			offsets := lakehouse.Offsets{}
			var prev Run
			seen := map[string]bool{} // sessions archived so far
			archivedN := 0
			var res *Result
			for i, chunk := range chunks {
				straddling := map[string]bool{}
				for _, rec := range chunk {
					if s := rec.ev.GetSessionId(); seen[s] {
						straddling[s] = true
					}
				}
				if i > 0 && len(straddling) == 0 {
					t.Fatalf("chunk %d: no session straddles the boundary", i)
				}
				for _, rec := range chunk {
					seen[rec.ev.GetSessionId()] = true
				}
				// The archiver's rows need not be in offset order.
				rows := slices.Clone(chunk)
				rng.Shuffle(len(rows), func(a, b int) { rows[a], rows[b] = rows[b], rows[a] })
				archive(t, lake, rows, offsets)
				archivedN += len(chunk)
				if res, err = r.Run(ctx); err != nil {
					t.Fatal(err)
				}
				wantMode := ModeIncremental
				if i == 0 {
					wantMode = ModeFull
				}
				if res.Run.Mode != wantMode {
					t.Fatalf("run %d: mode %q, want %q", i, res.Run.Mode, wantMode)
				}
				if i > 0 && (res.Run.EventsNew != int64(len(chunk)) || res.Run.EventsRead < res.Run.EventsNew) {
					t.Fatalf("run %d: %d new of %d read, want %d new", i, res.Run.EventsNew, res.Run.EventsRead, len(chunk))
				}
				if i > 0 {
					t.Logf("run %d: %d new, %d read of %d archived, %d straddling sessions", i, res.Run.EventsNew, res.Run.EventsRead, archivedN, len(straddling))
					if seed == 3 && res.Run.EventsRead >= int64(archivedN) {
						t.Fatalf("run %d over %s of events read all %d records", i, recs[archivedN-1].ev.GetTimestamp().AsTime().Sub(recs[0].ev.GetTimestamp().AsTime()), archivedN)
					}
				}
				want, err := model.Recompute(p, toModelEvents(recs[:archivedN]))
				if err != nil {
					t.Fatal(err)
				}
				if d := res.Model.Diff(want); d != "" {
					t.Fatalf("run %d (%s, %d straddling sessions) differs from the recompute: %s", i, res.Run.Mode, len(straddling), d)
				}
				// What the run persisted (its deltas, or its whole state)
				// reads back as the model, the spans of every session
				// included.
				switch sb := res.Run.StateBatches; {
				case len(sb) == 0:
					if i > 0 {
						wholeRuns++
					}
				case i == 0 || !slices.Equal(sb, append(prev.stateBatches(), res.Run.BatchID)):
					t.Fatalf("run %d: state batches %v after %v", i, sb, prev.stateBatches())
				default:
					deltaRuns++
				}
				ps, err := loadState(ctx, lake, res.Run, p)
				if err != nil {
					t.Fatal(err)
				}
				if d := ps.model.Diff(res.Model); d != "" {
					t.Fatalf("run %d: the persisted state (%d batches) differs from the model: %s", i, len(res.Run.stateBatches()), d)
				}
				if len(ps.spans) != len(seen) {
					t.Fatalf("run %d: %d session spans persisted, want %d", i, len(ps.spans), len(seen))
				}
				loaded, err := Load(ctx, lake, res.Run, p)
				if err != nil {
					t.Fatal(err)
				}
				if !loaded.Model.Covisit().Equal(res.Model.Covisit()) || !loaded.Model.Popularity().Equal(res.Model.Popularity()) {
					t.Fatalf("run %d: the aggregates Load reads differ from the model", i)
				}
				prev = res.Run
			}
			st := res.Model.Stats
			if st.Duplicates == 0 || st.Capped == 0 {
				t.Fatalf("the stream must exercise duplicates and the cap: %+v", st)
			}
			late := 0
			for i := 1; i < len(recs); i++ {
				if recs[i].ev.GetTimestamp().AsTime().Before(recs[i-1].ev.GetTimestamp().AsTime().Add(-time.Minute)) {
					late++
				}
			}
			if late == 0 {
				t.Fatal("the stream must have late events")
			}

			// The full recompute of the same snapshot, in parts (by session
			// hash, as under a memory bound too small for it at once).
			full, err := New(Config{Lake: lake, Params: &p, TopK: 10, Progress: time.Hour, Full: true, Force: true, MaxMemory: 900_000}, discard)
			if err != nil {
				t.Fatal(err)
			}
			if n := full.parts(int64(len(recs))); n < 3 {
				t.Fatalf("the full run is computed in %d parts, want several", n)
			}
			fres, err := full.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if fres.Run.Mode != ModeFull || fres.Run.EventsRead != int64(len(recs)) {
				t.Fatalf("full run: mode %q, %d read", fres.Run.Mode, fres.Run.EventsRead)
			}
			if d := res.Model.Diff(fres.Model); d != "" {
				t.Fatalf("incremental chain differs from the full run: %s", d)
			}
			a, b := res.Run, fres.Run
			if a.EventsAccepted != b.EventsAccepted || a.EventsDuplicate != b.EventsDuplicate || a.EventsCapped != b.EventsCapped ||
				a.Pairs != b.Pairs || a.Items != b.Items || a.Users != b.Users || !a.MaxEventTime.Equal(b.MaxEventTime) || !maps.Equal(a.Boundary, b.Boundary) {
				t.Fatalf("run records differ:\nincremental %+v\nfull        %+v", a, b)
			}
			if !equalViews(res.View.Neighbors, fres.View.Neighbors) || !equalViews(res.View.UserRecs, fres.View.UserRecs) || !equalScored(res.View.Popular, fres.View.Popular) ||
				!maps.EqualFunc(res.View.UserItems, fres.View.UserItems, slices.Equal) {
				t.Fatal("the incremental chain's view differs from the full run's")
			}
			// The state the full run persisted continues the same way.
			st2, err := loadState(ctx, lake, fres.Run, p)
			if err != nil {
				t.Fatal(err)
			}
			if d := st2.model.Diff(fres.Model); d != "" {
				t.Fatalf("persisted state differs from the model: %s", d)
			}
			if len(st2.spans) != len(seen) {
				t.Fatalf("%d session spans persisted, want %d", len(st2.spans), len(seen))
			}
		})
	}
}

func equalViews(a, b map[string][]store.Scored) bool {
	return maps.EqualFunc(a, b, equalScored)
}

// TestFullRunForced: a change of the model parameters, records removed from
// events (retention), and Config.Full each make the next run a full one; an
// up-to-date forced run folds nothing and changes nothing.
func TestFullRunForced(t *testing.T) {
	ctx := context.Background()
	lake := testLake(t)
	p := model.DefaultParams()
	next := map[int32]int64{}
	recs := stream(t, 5, 3000, next)
	offsets := lakehouse.Offsets{}
	run := func(p model.Params, full bool) *Result {
		t.Helper()
		r, err := New(Config{Lake: lake, Params: &p, TopK: 5, Progress: time.Hour, Full: full, Force: true}, discard)
		if err != nil {
			t.Fatal(err)
		}
		res, err := r.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	archive(t, lake, recs[:1000], offsets)
	if m := run(p, false).Run.Mode; m != ModeFull {
		t.Fatalf("first run: %s", m)
	}
	archive(t, lake, recs[1000:2000], offsets)
	if m := run(p, false).Run.Mode; m != ModeIncremental {
		t.Fatalf("second run: %s", m)
	}
	if res := run(p, false); res.Run.Mode != ModeIncremental || res.Run.EventsNew != 0 {
		t.Fatalf("an up-to-date forced run: %s, %d new", res.Run.Mode, res.Run.EventsNew)
	}
	if m := run(p, true).Run.Mode; m != ModeFull {
		t.Fatalf("--full: %s", m)
	}
	q := p
	q.Window = 2 * p.Window
	archive(t, lake, recs[2000:2500], offsets)
	if m := run(q, false).Run.Mode; m != ModeFull {
		t.Fatalf("after a change of parameters: %s", m)
	}
	// Maintenance drops the oldest day partition past retention.
	events, err := lake.LoadTable(ctx, lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	first := recs[0].ev.GetTimestamp().AsTime().Truncate(24 * time.Hour).Add(24 * time.Hour)
	_, err = lake.Commit(ctx, events, func(ctx context.Context, tbl *table.Table) (*table.Transaction, error) {
		txn := tbl.NewTransaction()
		return txn, txn.Delete(ctx, iceberg.LessThan(iceberg.Reference(schemas.ColumnTimestamp), iceberg.Timestamp(first.UnixMicro())), lakehouse.WithCarried(tbl, nil))
	}, lakehouse.CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	archive(t, lake, recs[2500:], offsets)
	res := run(q, false)
	if res.Run.Mode != ModeFull || res.Run.EventsRead >= int64(len(recs)) {
		t.Fatalf("after retention: %s, %d read of %d", res.Run.Mode, res.Run.EventsRead, len(recs))
	}
	// The current batch's state rows are gone: the next run cannot continue
	// from it.
	cov, err := lake.LoadTable(ctx, TableCovisitation)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lake.Commit(ctx, cov, func(ctx context.Context, tbl *table.Table) (*table.Transaction, error) {
		txn := tbl.NewTransaction()
		return txn, txn.Delete(ctx, iceberg.EqualTo(iceberg.Reference("batch_id"), res.Run.BatchID), nil)
	}, lakehouse.CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	archive(t, lake, stream(t, 6, 300, next), offsets)
	if res := run(q, false); res.Run.Mode != ModeFull {
		t.Fatalf("without the base batch's state: %s", res.Run.Mode)
	}
}

// loadState reads the whole aggregate state of batch run back, every
// session's span included: the aggregates and spans an incremental run
// restores in two steps (loadAggregates, then loadSpans).
func loadState(ctx context.Context, lake *lakehouse.Lakehouse, run Run, p model.Params) (*state, error) {
	st, err := loadAggregates(ctx, lake, run, p)
	if err != nil {
		return nil, err
	}
	if st.spans, st.spanRows, err = loadSpans(ctx, lake, run, nil); err != nil {
		return nil, err
	}
	return st, nil
}
