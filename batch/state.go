package batch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
	"golang.org/x/sync/errgroup"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/model"
)

// The aggregate state of a batch, beside its co-visitation and popularity
// tables (which hold full counts): what an incremental run needs to continue
// from it exactly. See docs/DESIGN.md, "Incremental batch runs".
var (
	userItemsDef = tableDef{name: TableUserItems, partitioned: true, doc: "per (user, item): latest event time, summed weight, purchased — the Users aggregate", cols: []col{
		{"batch_id", colString, ""}, {"user_id", colString, ""}, {"item", colString, ""},
		{"last_micros", colInt64, "latest event time, unix micros"}, {"weight", colInt64, ""}, {"purchased", colBool, ""},
	}}
	sessionSpansDef = tableDef{name: TableSessionSpans, partitioned: true, doc: "per session: event-time range of its records, to find a session's earlier records by day partition", cols: []col{
		{"batch_id", colString, ""}, {"session_id", colString, ""},
		{"first_micros", colInt64, "earliest record's event time, unix micros"}, {"last_micros", colInt64, "latest record's event time, unix micros"},
	}}
)

// evolve adds def's optional columns that an existing table lacks (a table
// created by an older version); old rows read them as null.
func evolve(ctx context.Context, lake *lakehouse.Lakehouse, def *tableDef) error {
	t, err := lake.LoadTable(ctx, def.name)
	if errors.Is(err, catalog.ErrNoSuchTable) {
		return nil
	}
	if err != nil {
		return err
	}
	var missing []col
	for i, c := range def.cols {
		if _, ok := t.Schema().FindFieldByName(c.name); !ok && def.optional(i) {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = lake.Commit(ctx, t, func(ctx context.Context, t *table.Table) (*table.Transaction, error) {
		txn := t.NewTransaction()
		u := txn.UpdateSchema(true, false)
		for _, c := range missing {
			if _, ok := t.Schema().FindFieldByName(c.name); !ok {
				u = u.AddColumn([]string{c.name}, c.typ.iceberg(), c.doc, false, nil)
			}
		}
		return txn, u.Commit()
	}, lakehouse.CommitOptions{})
	if err != nil {
		return fmt.Errorf("add columns to %s: %w", def.name, err)
	}
	return nil
}

// state is what a batch persists for the next incremental run besides its
// view: the model's aggregates and every session's time span.
//
// An incremental run persists only what it adds to its base's state (delta
// and the spans of the sessions it touched): the aggregates are sums (and
// max / sum / or per user entry, min / max per span), so the state of a batch
// is the sum of the state rows of its chain, StateBatches, and reading them
// all (loadState) restores it exactly. A run whose chain would grow past
// maxStateChain batches, or whose deltas since the chain's root would pass
// half of the root's events, writes its whole state instead (the chain
// restarts).
type state struct {
	model *model.Model
	spans map[string]model.Span
	// spansWritten, when not nil, replaces spans: a full recompute's
	// spans, each session once, are written while the model builds
	// (spanWriter), and this reports the write's outcome.
	spansWritten <-chan error
	// delta, when not nil, is what this run added to its base (chain): the
	// run persists delta and deltaSpans instead of model and spans.
	delta      *model.Model
	deltaSpans map[string]model.Span
	chain      []string
	// spanRows is the session_spans rows loadState read (spans may keep
	// fewer).
	spanRows int64
}

// sessionSpan is one session's span.
type sessionSpan struct {
	session string
	span    model.Span
}

// batches returns the StateBatches of the run id that persists st: nil when
// it writes its whole state.
func (st *state) batches(id string) []string {
	if st.delta == nil {
		return nil
	}
	return append(slices.Clone(st.chain), id)
}

// persisted returns the model whose aggregates the run writes.
func (st *state) persisted() *model.Model {
	if st.delta != nil {
		return st.delta
	}
	return st.model
}

// stateBatches returns the batches whose state rows make run's state.
func (r Run) stateBatches() []string {
	if len(r.StateBatches) == 0 {
		return []string{r.BatchID}
	}
	return r.StateBatches
}

// state reports whether def is a table of the aggregate state, whose rows a
// batch's state chain shares.
func (d *tableDef) state() bool {
	return d == &covisitationDef || d == &popularityDef || d == &userItemsDef || d == &sessionSpansDef
}

// Bounds of a state chain (see state).
const (
	maxStateChain = 16
	// maxChainShare: the chain's deltas may hold up to 1/maxChainShare
	// of the events of its root.
	maxChainShare = 2
)

// writeState starts writing the user items and session spans in g (the
// co-visitation and popularity tables are written by writeModel from
// state.persisted).
func (r *Runner) writeState(ctx context.Context, g *errgroup.Group, st *state, run *Run, log *slog.Logger) {
	id := run.BatchID
	users, spans, written := st.model.Users(), st.spans, st.spansWritten
	if st.delta != nil {
		users, spans, written = st.delta.Users(), st.deltaSpans, nil
	}
	g.Go(func() error {
		// Users and items are written as ids into the model's
		// dictionaries (rowWriter.id): one dictionary per row group, not
		// each row's strings (a dictionary past Parquet's page limit, say
		// of millions of users, falls back to plain strings by itself).
		ids := idCols{1: users.UserNames(), 2: users.ItemNames()}
		return r.writeTableItems(ctx, &userItemsDef, run, log, ids, func(w *rowWriter) {
			for ui, e := range users.EntryIDs() {
				w.str(0, id)
				w.id(1, ui[0])
				w.id(2, ui[1])
				w.i64(3, e.Last)
				w.i64(4, e.Weight)
				w.boolean(5, e.Purchased)
				w.end()
			}
		})
	})
	if written != nil {
		g.Go(func() error { return <-written })
		return
	}
	g.Go(func() error {
		return r.writeTable(ctx, &sessionSpansDef, run, log, func(w *rowWriter) {
			for s, sp := range spans {
				spanRow(w, id, s, sp)
			}
		})
	})
}

// spanRow adds session s's span sp to w, a writer of batch id's
// session_spans rows.
func spanRow(w *rowWriter, id, s string, sp model.Span) {
	w.str(0, id)
	w.str(1, s)
	w.i64(2, sp.First)
	w.i64(3, sp.Last)
	w.end()
}

// spanWriter writes a full recompute's session_spans rows while the model
// builds: the spans of a part's sessions are final once its shards are
// built (the parts are by session hash: a session lies in one), so they are
// encoded beside the build of the next parts — on the core time the build
// leaves idle — instead of beside the view, whose work is the run's
// critical path.
type spanWriter struct {
	// chunk gathers spans (add) until it holds spanChunk, then goes to
	// the writer through chunks.
	chunk  []sessionSpan
	chunks chan []sessionSpan
	done   chan error
	// ended is closed when the write returned: add no longer waits.
	ended chan struct{}
	// ctx is the write's, cancelled when it returned or was aborted.
	ctx    context.Context
	cancel context.CancelFunc
}

// spanChunk is how many spans go to the writer at a time, a record batch's
// worth; spanChunksAhead chunks may wait for it (~70 MB of spans at 10M
// events: the build waits for the writer only past that).
const (
	spanChunk       = rowsPerBatch
	spanChunksAhead = 32
)

// startSpans starts writing run's session_spans table with the spans added
// to the returned spanWriter.
func (r *Runner) startSpans(ctx context.Context, run *Run, log *slog.Logger) *spanWriter {
	ctx, cancel := context.WithCancel(ctx)
	sw := &spanWriter{chunks: make(chan []sessionSpan, spanChunksAhead), done: make(chan error, 1),
		ended: make(chan struct{}), ctx: ctx, cancel: cancel}
	id := run.BatchID
	go func() {
		defer close(sw.ended)
		// The write's context ends with it, so the run's context (a
		// `batch schedule` process's, for its whole life) keeps no child
		// per run.
		defer cancel()
		sw.done <- r.writeTable(ctx, &sessionSpansDef, run, log, func(w *rowWriter) {
			for chunk := range sw.chunks {
				for _, s := range chunk {
					spanRow(w, id, s.session, s.span)
				}
			}
		})
	}()
	return sw
}

// add writes session s's span sp (the model's EachSpan callback).
func (sw *spanWriter) add(s string, sp model.Span) {
	if sw.chunk == nil {
		sw.chunk = make([]sessionSpan, 0, spanChunk)
	}
	sw.chunk = append(sw.chunk, sessionSpan{s, sp})
	if len(sw.chunk) == spanChunk {
		sw.send()
	}
}

// send hands the spans gathered to the writer.
func (sw *spanWriter) send() {
	if len(sw.chunk) > 0 {
		select {
		case sw.chunks <- sw.chunk:
		case <-sw.ended: // the write failed: finish reports it
		}
	}
	sw.chunk = nil
}

// finish ends the rows: the returned channel reports the write's outcome.
func (sw *spanWriter) finish() <-chan error {
	sw.send()
	close(sw.chunks)
	return sw.done
}

// abort stops the write after the run failed (its files are not committed)
// and waits for it.
func (sw *spanWriter) abort() {
	sw.cancel()
	close(sw.chunks)
	<-sw.done
}

// readState calls fn once per record batch of def's rows matching filter,
// with its columns resolved by name once per batch rather than per value.
//
// The files are read one at a time (one decoding goroutine beside fn, a
// record batch ahead): a scan reading several files at once returns their
// batches in file order, holding every decoded batch of the files ahead of
// the one being read — at 10M events a whole second file of the large
// tables, ~250 MB of Arrow buffers at the incremental run's peak, beside
// the state being restored.
func readState(ctx context.Context, lake *lakehouse.Lakehouse, filter iceberg.BooleanExpression, def *tableDef, fn func(n int, c *batchCols)) error {
	t, err := lake.LoadTable(ctx, def.name)
	if err != nil {
		return err
	}
	_, batches, err := t.Scan(table.WithRowFilter(filter), table.WithMaxConcurrency(1)).ToArrowRecords(ctx)
	if err != nil {
		return fmt.Errorf("scan %s: %w", def.name, err)
	}
	for rec, err := range batches {
		if err != nil {
			return fmt.Errorf("scan %s: %w", def.name, err)
		}
		c := &batchCols{rec: rec}
		fn(int(rec.NumRows()), c)
		rec.Release()
		if c.err != nil {
			return fmt.Errorf("read %s: %w", def.name, c.err)
		}
	}
	return nil
}

// loadAggregates reads the model's aggregates of batch run back (the
// state rows of every batch of its chain, summed; the session spans are
// loadSpans'): an incremental run restores them before it
// reads the new records, so that the restore's transient buffers and the
// records are not held at once.
func loadAggregates(ctx context.Context, lake *lakehouse.Lakehouse, run Run, p model.Params) (*state, error) {
	rs, err := model.NewRestorer(p)
	if err != nil {
		return nil, err
	}
	filter := inBatches(run.stateBatches())
	steps := []struct {
		def *tableDef
		fn  func(n int, c *batchCols)
	}{
		{&covisitationDef, func(n int, c *batchCols) {
			a, b, cnt := c.str("item_a"), c.str("item_b"), c.i64("count")
			if c.err == nil {
				for i := range n {
					rs.Pair(a.Value(i), b.Value(i), cnt.Value(i))
				}
			}
		}},
		{&popularityDef, func(n int, c *batchCols) {
			item, cnt := c.str("item"), c.i64("count")
			if c.err == nil {
				for i := range n {
					rs.Item(item.Value(i), cnt.Value(i))
				}
			}
		}},
		{&userItemsDef, func(n int, c *batchCols) {
			user, item, last, weight, bought := c.str("user_id"), c.str("item"), c.i64("last_micros"), c.i64("weight"), c.boolean("purchased")
			if c.err == nil {
				for i := range n {
					rs.User(user.Value(i), model.UserItem{Item: item.Value(i), Last: last.Value(i), Weight: weight.Value(i), Purchased: bought.Value(i)})
				}
			}
		}},
	}
	for _, s := range steps {
		if err := readState(ctx, lake, filter, s.def, s.fn); err != nil {
			return nil, fmt.Errorf("load the state of batch %s: %w", run.BatchID, err)
		}
	}
	m := rs.Model(model.Stats{Accepted: run.EventsAccepted, Duplicates: run.EventsDuplicate, Capped: run.EventsCapped})
	return &state{model: m}, nil
}

// loadSpans reads the session spans of batch run back, and how many rows
// it read. wantSpan, when not nil, selects the sessions whose spans are kept
// (the others are read, not held).
func loadSpans(ctx context.Context, lake *lakehouse.Lakehouse, run Run, wantSpan func(session string) bool) (map[string]model.Span, int64, error) {
	var spans map[string]model.Span
	if wantSpan == nil {
		spans = make(map[string]model.Span, max(0, run.EventsAccepted/8))
	} else {
		spans = make(map[string]model.Span)
	}
	var spanRows int64
	err := readState(ctx, lake, inBatches(run.stateBatches()), &sessionSpansDef, func(n int, c *batchCols) {
		sid, first, last := c.str("session_id"), c.i64("first_micros"), c.i64("last_micros")
		if c.err != nil {
			return
		}
		spanRows += int64(n)
		for i := range n {
			s, sp := sid.Value(i), model.Span{First: first.Value(i), Last: last.Value(i)}
			if wantSpan != nil && !wantSpan(s) {
				continue
			}
			if old, ok := spans[s]; ok {
				spans[s] = model.Span{First: min(old.First, sp.First), Last: max(old.Last, sp.Last)}
			} else {
				spans[strings.Clone(s)] = sp
			}
		}
	})
	if err != nil {
		return nil, 0, fmt.Errorf("load the session spans of batch %s: %w", run.BatchID, err)
	}
	return spans, spanRows, nil
}

// inBatches matches the rows of the batches ids (the tables are partitioned by
// batch_id, so it prunes to their files).
func inBatches(ids []string) iceberg.BooleanExpression {
	if len(ids) == 1 {
		return iceberg.EqualTo(iceberg.Reference("batch_id"), ids[0])
	}
	return iceberg.IsIn(iceberg.Reference("batch_id"), ids...)
}

// batchCols resolves the typed columns of one record batch by name; the
// first error sticks.
type batchCols struct {
	rec arrow.RecordBatch
	err error
}

func batchCol[T arrow.Array](c *batchCols, name, want string) T {
	var zero T
	idx := c.rec.Schema().FieldIndices(name)
	if len(idx) != 1 {
		if c.err == nil {
			c.err = fmt.Errorf("no column %q", name)
		}
		return zero
	}
	a, ok := c.rec.Column(idx[0]).(T)
	if !ok && c.err == nil {
		c.err = fmt.Errorf("column %q is not a %s", name, want)
	}
	return a
}

func (c *batchCols) str(name string) *array.String { return batchCol[*array.String](c, name, "string") }
func (c *batchCols) i64(name string) *array.Int64  { return batchCol[*array.Int64](c, name, "long") }
func (c *batchCols) boolean(name string) *array.Boolean {
	return batchCol[*array.Boolean](c, name, "boolean")
}

// maxRanges bounds the time ranges of the filter that finds the earlier
// records of continued sessions (an expression per range).
const maxRanges = 256

// timeRanges returns [from, to) ranges of unix micros, ascending, that hold
// every span: the spans merged where less than gap apart (the gap doubled
// until at most maxRanges remain). The filter made of them prunes the day
// partitions of events, and the data files by their time bounds, to those
// that can hold a continued session's records.
func timeRanges(spans []model.Span, gap int64) [][2]int64 {
	rs := make([][2]int64, 0, len(spans))
	for _, s := range spans {
		rs = append(rs, [2]int64{s.First, s.Last + 1})
	}
	slices.SortFunc(rs, func(a, b [2]int64) int { return cmp.Compare(a[0], b[0]) })
	for {
		out := make([][2]int64, 0, len(rs))
		for _, r := range rs {
			if n := len(out); n > 0 && r[0] <= out[n-1][1]+gap {
				out[n-1][1] = max(out[n-1][1], r[1])
				continue
			}
			out = append(out, r)
		}
		if len(out) <= maxRanges {
			return out
		}
		rs, gap = out, 2*gap+1
	}
}
