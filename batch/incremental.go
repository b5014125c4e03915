package batch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/schemas"
)

// The modes of a batch run (batch_runs.mode).
const (
	ModeFull        = "full"
	ModeIncremental = "incremental"
)

// errNotIncremental is returned by computeIncremental when the new records
// cannot be folded into the base batch exactly; the run recomputes in full.
var errNotIncremental = errors.New("the new records cannot be folded into the previous batch")

// planIncremental returns the batch an incremental run continues from, or
// nil and the reason a full recompute is needed. A full run is forced when
// asked (Config.Full), when there is no previous batch or it has no aggregate
// state (written by an older version), when the model parameters changed,
// and when records were removed from events since the previous batch's
// snapshot — maintenance dropping day partitions past retention.events (the
// retained history the aggregates are defined over), or the snapshot being
// gone from the history altogether — or a partition's boundary went back.
func (r *Runner) planIncremental(events *table.Table, snap *table.Snapshot, boundary map[int32]int64, last Run, ok bool) (*Run, string) {
	switch {
	case r.cfg.Full:
		return nil, "full recompute asked"
	case !ok:
		return nil, "no previous batch"
	case last.Mode == "":
		return nil, "the previous batch has no aggregate state"
	}
	var p model.Params
	if err := json.Unmarshal([]byte(last.Params), &p); err != nil || p != *r.cfg.Params {
		return nil, "model parameters changed"
	}
	for part, off := range last.Boundary {
		if b, ok := boundary[part]; !ok || b < off {
			return nil, "the boundary of partition " + strconv.Itoa(int(part)) + " went back"
		}
	}
	meta := events.Metadata()
	for s := snap; s.SnapshotID != last.SourceSnapshotID; {
		if s.Summary == nil {
			return nil, "a snapshot since the previous batch has no summary"
		}
		if s.Summary.Operation != table.OpAppend {
			added, err1 := strconv.ParseInt(s.Summary.Properties["added-records"], 10, 64)
			deleted, err2 := strconv.ParseInt(s.Summary.Properties["deleted-records"], 10, 64)
			if s.Summary.Properties["deleted-records"] == "" {
				deleted, err2 = 0, nil
			}
			if s.Summary.Properties["added-records"] == "" {
				added, err1 = 0, nil
			}
			if err1 != nil || err2 != nil || deleted != added {
				return nil, "records were removed from events since the previous batch (retention)"
			}
		}
		if s.ParentSnapshotID == nil {
			return nil, "the previous batch's snapshot is no longer in the history of events"
		}
		if s = meta.SnapshotByID(*s.ParentSnapshotID); s == nil {
			return nil, "the previous batch's snapshot is no longer in the history of events"
		}
	}
	return &last, ""
}

// continueChain returns the state chain of base that the run extends with
// its delta, or nil and the reason to write the whole state instead: the
// chain would pass Runner.chainLen batches, or its deltas (events_new since
// its root, this run's included) would pass 1/maxChainShare of the events
// its root covers, or a batch of it is not in batch_runs.
func (r *Runner) continueChain(ctx context.Context, base *Run, eventsNew int64) ([]string, string, error) {
	chain := base.stateBatches()
	limit := r.chainLen
	if limit == 0 {
		limit = maxStateChain
	}
	if len(chain)+1 > limit {
		return nil, "the state chain has " + strconv.Itoa(len(chain)) + " batches", nil
	}
	runs, err := Runs(ctx, r.cfg.Lake)
	if err != nil {
		return nil, "", err
	}
	byID := make(map[string]*Run, len(runs))
	for i := range runs {
		byID[runs[i].BatchID] = &runs[i]
	}
	root, ok := byID[chain[0]]
	if !ok {
		return nil, "the root of the state chain is not in batch_runs", nil
	}
	added := eventsNew
	for _, id := range chain[1:] {
		b, ok := byID[id]
		if !ok {
			return nil, "a batch of the state chain is not in batch_runs", nil
		}
		added += b.EventsNew
	}
	if total := root.EventsAccepted + root.EventsDuplicate + root.EventsCapped; added*maxChainShare > total {
		return nil, "the state chain's deltas outgrew its root", nil
	}
	return chain, "", nil
}

// anyOf is the disjunction of es (AlwaysFalse when empty).
func anyOf(es []iceberg.BooleanExpression) iceberg.BooleanExpression {
	switch len(es) {
	case 0:
		return iceberg.AlwaysFalse{}
	case 1:
		return es[0]
	}
	return iceberg.NewOr(es[0], es[1], es[2:]...)
}

// coveredBy matches the records at or below boundary b.
func coveredBy(b map[int32]int64) iceberg.BooleanExpression {
	var es []iceberg.BooleanExpression
	for _, p := range slices.Sorted(mapsKeys(b)) {
		es = append(es, iceberg.NewAnd(iceberg.EqualTo(iceberg.Reference(schemas.ColumnKafkaPartition), p),
			iceberg.LessThanEqual(iceberg.Reference(schemas.ColumnKafkaOffset), b[p])))
	}
	return anyOf(es)
}

// pastBoundary matches the records past boundary b. It is written so that
// Iceberg can prune data files by their column bounds: the partitions b does
// not hold are named one by one below its highest and as a range above it (a
// NotIn would match every file whose partition bounds span several).
func pastBoundary(b map[int32]int64) iceberg.BooleanExpression {
	if len(b) == 0 {
		return iceberg.AlwaysTrue{}
	}
	parts := slices.Sorted(mapsKeys(b))
	part, off := iceberg.Reference(schemas.ColumnKafkaPartition), iceberg.Reference(schemas.ColumnKafkaOffset)
	es := []iceberg.BooleanExpression{iceberg.GreaterThan(part, parts[len(parts)-1])}
	for p := int32(0); p < parts[len(parts)-1]; p++ {
		if _, ok := b[p]; !ok {
			es = append(es, iceberg.EqualTo(part, p))
		}
	}
	for _, p := range parts {
		es = append(es, iceberg.NewAnd(iceberg.EqualTo(part, p), iceberg.GreaterThan(off, b[p])))
	}
	return anyOf(es)
}

func mapsKeys(b map[int32]int64) func(func(int32) bool) {
	return func(yield func(int32) bool) {
		for k := range b {
			if !yield(k) {
				return
			}
		}
	}
}

// inRanges matches event times in any of the [from, to) ranges (unix micros).
func inRanges(rs [][2]int64) iceberg.BooleanExpression {
	es := make([]iceberg.BooleanExpression, len(rs))
	for i, r := range rs {
		es[i] = iceberg.NewAnd(iceberg.GreaterThanEqual(iceberg.Reference(schemas.ColumnTimestamp), iceberg.Timestamp(r[0])),
			iceberg.LessThan(iceberg.Reference(schemas.ColumnTimestamp), iceberg.Timestamp(r[1])))
	}
	return anyOf(es)
}

// scanEvents streams the events of snap matching filter to fn, as model
// events whose strings are only valid during the call; it returns the rows
// read and the newest event time.
func scanEvents(ctx context.Context, events *table.Table, snap *table.Snapshot, filter iceberg.BooleanExpression, fn func(e *model.Event)) (int64, int64, error) {
	_, batches, err := lakehouse.ScanSnapshot(ctx, events, snap, EventColumns, table.WithRowFilter(filter))
	if err != nil {
		return 0, 0, err
	}
	var n, maxTime int64
	for rec, err := range batches {
		if err != nil {
			return 0, 0, err
		}
		err := eachEvent(rec, func(e *model.Event) {
			n++
			maxTime = max(maxTime, e.Time)
			fn(e)
		})
		rec.Release()
		if err != nil {
			return 0, 0, err
		}
	}
	return n, maxTime, nil
}

func eachEvent(rec arrow.RecordBatch, fn func(e *model.Event)) error {
	c, err := columnsOf(rec)
	if err != nil {
		return err
	}
	unit := c.ts.DataType().(*arrow.TimestampType).Unit
	var e model.Event
	for i := range int(rec.NumRows()) {
		kind, ok := schemas.ParseKind(c.kind.Value(i))
		if !ok {
			return fmt.Errorf("events row at partition %d offset %d: unknown interaction %q",
				c.partition.Value(i), c.offset.Value(i), c.kind.Value(i))
		}
		e = model.Event{
			EventID:   c.eventID.Value(i),
			SessionID: c.session.Value(i),
			UserID:    c.user.Value(i),
			ItemID:    c.item.Value(i),
			Kind:      kind,
			Time:      micros(c.ts.Value(i), unit),
			Partition: c.partition.Value(i),
			Offset:    c.offset.Value(i),
		}
		fn(&e)
	}
	return nil
}

// interner keeps one copy of each session, user and item id of the events an
// incremental run holds (they repeat: a session's records, a user's
// sessions, an item's events), instead of one per event.
type interner map[string]string

func (in interner) get(s string) string {
	if c, ok := in[s]; ok {
		return c
	}
	c := strings.Clone(s)
	in[c] = c
	return c
}

// clone copies e, its strings valid after the scan's record batch is
// released.
func (in interner) clone(e *model.Event) model.Event {
	c := *e
	c.EventID, c.SessionID, c.UserID, c.ItemID = strings.Clone(e.EventID), in.get(e.SessionID), in.get(e.UserID), in.get(e.ItemID)
	return c
}

func compareEvents(a, b model.Event) int {
	if a.Partition != b.Partition {
		return int(a.Partition) - int(b.Partition)
	}
	switch {
	case a.Offset < b.Offset:
		return -1
	case a.Offset > b.Offset:
		return 1
	}
	return 0
}

// computeIncremental folds the records of snap past base's boundary into
// base's aggregates: it reads base's state, the new records, and — for the
// sessions the new records belong to — their earlier records, found in the
// day partitions their recorded time spans touch. Each such session is
// replayed: its earlier records only to know them (Session.Add), the new
// ones counted (Model.Apply), exactly as the full recompute would count them.
func (r *Runner) computeIncremental(ctx context.Context, events *table.Table, snap *table.Snapshot, base *Run, run *Run, log *slog.Logger) (*state, error) {
	start := time.Now()
	b := model.Boundary(base.Boundary)
	// The aggregates first: their restore's transient buffers are gone
	// before the new records are held.
	st, err := loadAggregates(ctx, r.cfg.Lake, *base, *r.cfg.Params)
	if err != nil {
		return nil, err
	}
	fresh := newNewRecords()
	n, maxTime, err := scanEvents(ctx, events, snap, pastBoundary(base.Boundary), func(e *model.Event) {
		if b.Covers(e.Partition, e.Offset) {
			return
		}
		fresh.add(e)
	})
	if err != nil {
		return nil, fmt.Errorf("read the records past the boundary: %w", err)
	}
	run.EventsRead, run.EventsNew = n, n
	// A run that extends the state chain needs only the spans of the
	// sessions it continues; one that writes its whole state needs all.
	chain, why, err := r.continueChain(ctx, base, n)
	if err != nil {
		return nil, err
	}
	var wantSpan func(string) bool
	if chain != nil {
		wantSpan = fresh.has
	}
	if st.spans, st.spanRows, err = loadSpans(ctx, r.cfg.Lake, *base, wantSpan); err != nil {
		return nil, err
	}
	// The state must be the base batch's whole state (its rows may have been
	// removed: an old batch made current again, say).
	if st.model.Covisit().Len() != int(base.Pairs) || st.model.Popularity().Len() != int(base.Items) ||
		base.EventsAccepted > 0 && st.spanRows == 0 {
		return nil, fmt.Errorf("the state of batch %s is incomplete (%d of %d pairs, %d of %d items, %d session spans): %w",
			base.BatchID, st.model.Covisit().Len(), base.Pairs, st.model.Popularity().Len(), base.Items, st.spanRows, errNotIncremental)
	}
	log.Info("batch state loaded", "base_batch_id", base.BatchID, "state_batches", len(base.stateBatches()), "pairs", st.model.Covisit().Len(),
		"session_spans", st.spanRows, "spans_kept", len(st.spans), "elapsed", time.Since(start).Round(time.Millisecond))
	var spans []model.Span
	for _, s := range fresh.sessions {
		if sp, ok := st.spans[s]; ok {
			spans = append(spans, sp)
		}
	}
	earlier := make(map[string][]model.Event)
	ids := make(interner)
	if len(spans) > 0 {
		ranges := timeRanges(spans, int64(time.Hour/time.Microsecond))
		n, _, err := scanEvents(ctx, events, snap, iceberg.NewAnd(coveredBy(base.Boundary), inRanges(ranges)), func(e *model.Event) {
			if !b.Covers(e.Partition, e.Offset) {
				return
			}
			if !fresh.has(e.SessionID) {
				return
			}
			c := ids.clone(e)
			earlier[c.SessionID] = append(earlier[c.SessionID], c)
		})
		if err != nil {
			return nil, fmt.Errorf("read the earlier records of %d sessions: %w", len(spans), err)
		}
		run.EventsRead += n
		log.Info("earlier records of continued sessions read", "sessions", len(spans), "time_ranges", len(ranges), "rows", n)
	}
	p := *r.cfg.Params
	delta, err := model.New(p)
	if err != nil {
		return nil, err
	}
	// The records are dropped once folded, before the merge (which holds
	// the old and the new bases of the state at once).
	fresh.group()
	sessions := len(fresh.sessions)
	for si, sid := range fresh.sessions {
		recs := fresh.recs[fresh.bySession[si]:fresh.bySession[si+1]]
		old := earlier[sid]
		slices.SortFunc(old, compareEvents)
		if first := &recs[0]; len(old) > 0 && compareEvents(old[len(old)-1], model.Event{Partition: first.partition, Offset: first.offset}) >= 0 {
			return nil, fmt.Errorf("session %q has new records before earlier ones (partitions %d and %d): %w",
				sid, first.partition, old[len(old)-1].Partition, errNotIncremental)
		}
		s := model.NewSession(sid)
		for _, e := range old {
			s.Add(&p, e, nil)
		}
		sp, ok := st.spans[sid]
		for i := range recs {
			e := fresh.event(&recs[i])
			delta.Apply(s, e)
			sp, ok = sp.Widen(e.Time, ok), true
		}
		st.spans[sid] = sp
		delete(earlier, sid)
	}
	fresh, earlier = nil, nil
	if err := st.model.Merge(delta); err != nil {
		return nil, err
	}
	if chain != nil {
		// st.spans holds the continued sessions' spans only (loadState),
		// widened: the spans this run adds to the chain.
		st.delta, st.chain, st.deltaSpans = delta, chain, st.spans
	} else {
		log.Info("batch state written whole", "reason", why)
	}
	run.MaxEventTime = base.MaxEventTime
	if t := time.UnixMicro(maxTime).UTC(); maxTime > 0 && t.After(run.MaxEventTime) {
		run.MaxEventTime = t
	}
	// How much of the view the new records can change: every item whose
	// co-visitation row changed, every user of theirs (and every user whose
	// recent items include such an item) is scored again.
	log.Info("batch fold done", "events_new", run.EventsNew, "sessions", sessions,
		"items_changed", len(delta.Covisit().Items()), "items", st.model.Popularity().Len(),
		"users_changed", len(delta.Users().Users()), "elapsed", time.Since(start).Round(time.Millisecond))
	return st, nil
}
