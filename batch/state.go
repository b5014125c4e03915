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
type state struct {
	model *model.Model
	spans map[string]model.Span
}

// writeState starts writing the user items and session spans in g.
func (r *Runner) writeState(ctx context.Context, g *errgroup.Group, st *state, run *Run, log *slog.Logger) {
	id := run.BatchID
	g.Go(func() error {
		return r.writeTable(ctx, &userItemsDef, run, log, func(w *rowWriter) {
			for user, e := range st.model.Users().Entries() {
				w.str(0, id)
				w.str(1, user)
				w.str(2, e.Item)
				w.i64(3, e.Last)
				w.i64(4, e.Weight)
				w.boolean(5, e.Purchased)
				w.end()
			}
		})
	})
	g.Go(func() error {
		return r.writeTable(ctx, &sessionSpansDef, run, log, func(w *rowWriter) {
			for s, sp := range st.spans {
				w.str(0, id)
				w.str(1, s)
				w.i64(2, sp.First)
				w.i64(3, sp.Last)
				w.end()
			}
		})
	})
}

// loadState reads the aggregate state of batch run back.
func loadState(ctx context.Context, lake *lakehouse.Lakehouse, run Run, p model.Params) (*state, error) {
	rs, err := model.NewRestorer(p)
	if err != nil {
		return nil, err
	}
	filter := iceberg.EqualTo(iceberg.Reference("batch_id"), run.BatchID)
	read := func(def *tableDef, fn func(c *rowReader)) error {
		t, err := lake.LoadTable(ctx, def.name)
		if err != nil {
			return err
		}
		return scanRows(ctx, t, filter, func(rec arrow.RecordBatch, i int) error {
			c := &rowReader{rec: rec, i: i}
			fn(c)
			if c.err != nil {
				return fmt.Errorf("read %s: %w", def.name, c.err)
			}
			return nil
		})
	}
	spans := make(map[string]model.Span)
	steps := []struct {
		def *tableDef
		fn  func(c *rowReader)
	}{
		{&covisitationDef, func(c *rowReader) { rs.Pair(c.str("item_a"), c.str("item_b"), c.i64("count")) }},
		{&popularityDef, func(c *rowReader) { rs.Item(c.str("item"), c.i64("count")) }},
		{&userItemsDef, func(c *rowReader) {
			rs.User(c.str("user_id"), model.UserItem{Item: c.str("item"), Last: c.i64("last_micros"), Weight: c.i64("weight"), Purchased: c.boolean("purchased")})
		}},
		{&sessionSpansDef, func(c *rowReader) {
			spans[strings.Clone(c.str("session_id"))] = model.Span{First: c.i64("first_micros"), Last: c.i64("last_micros")}
		}},
	}
	for _, s := range steps {
		if err := read(s.def, s.fn); err != nil {
			return nil, fmt.Errorf("load the state of batch %s: %w", run.BatchID, err)
		}
	}
	m := rs.Model(model.Stats{Accepted: run.EventsAccepted, Duplicates: run.EventsDuplicate, Capped: run.EventsCapped})
	return &state{model: m, spans: spans}, nil
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
