package batch

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// Loaded is a published batch read back from Iceberg.
type Loaded struct {
	Run  Run
	View *store.BatchView
	// Model holds the batch's co-visitation and popularity counts (the
	// aggregates the speed layer adds its deltas to). Per-user aggregates
	// are not persisted; Model.Users is empty.
	Model *model.Model
}

// Load reads the view tables and aggregates of the published batch run. The
// model gets the parameters the run recorded (so deltas added to it are
// counted the same way), p when the run recorded none.
func Load(ctx context.Context, lake *lakehouse.Lakehouse, run Run, p model.Params) (*Loaded, error) {
	if run.Params != "" {
		var rp model.Params
		if err := json.Unmarshal([]byte(run.Params), &rp); err != nil {
			return nil, fmt.Errorf("batch %s: model params %q: %w", run.BatchID, run.Params, err)
		}
		p = rp
	}
	m, err := model.New(p)
	if err != nil {
		return nil, err
	}
	l := &Loaded{Run: run, Model: m, View: &store.BatchView{
		Meta:      run.Meta(),
		Neighbors: make(map[string][]store.Scored),
		UserRecs:  make(map[string][]store.Scored),
	}}
	// The view tables hold the batch's own rows; the aggregates are the
	// sum of its state chain's (see state).
	var filter iceberg.BooleanExpression = iceberg.EqualTo(iceberg.Reference("batch_id"), run.BatchID)
	stateFilter := inBatches(run.stateBatches())
	read := func(def *tableDef, fn func(c *rowReader) error) error {
		t, err := lake.LoadTable(ctx, def.name)
		if err != nil {
			return err
		}
		filter := filter
		if def.state() {
			filter = stateFilter
		}
		return scanRows(ctx, t, filter, func(rec arrow.RecordBatch, i int) error {
			c := &rowReader{rec: rec, i: i}
			if err := fn(c); err != nil {
				return err
			}
			if c.err != nil {
				return fmt.Errorf("read %s: %w", def.name, c.err)
			}
			return nil
		})
	}
	type ranked struct {
		rank int32
		s    store.Scored
	}
	neighbors := map[string][]ranked{}
	users := map[string][]ranked{}
	var popular []ranked
	steps := []struct {
		def *tableDef
		fn  func(c *rowReader) error
	}{
		{&covisitationDef, func(c *rowReader) error {
			m.Covisit().Add(c.str("item_a"), c.str("item_b"), c.i64("count"))
			return nil
		}},
		{&popularityDef, func(c *rowReader) error {
			m.Popularity().Add(c.str("item"), c.i64("count"))
			return nil
		}},
		{&itemNeighborsDef, func(c *rowReader) error {
			item := c.str("item")
			neighbors[item] = append(neighbors[item], ranked{c.i32("rank"), store.Scored{Item: c.str("neighbor"), Score: c.f64("score")}})
			return nil
		}},
		{&userRecsDef, func(c *rowReader) error {
			u := c.str("user_id")
			users[u] = append(users[u], ranked{c.i32("rank"), store.Scored{Item: c.str("item"), Score: c.f64("score")}})
			if in := c.optStr("inputs"); in != "" {
				items, err := decodeInputs(in)
				if err != nil {
					return fmt.Errorf("user %s: %w", u, err)
				}
				if l.View.UserItems == nil {
					l.View.UserItems = make(map[string][]string)
				}
				l.View.UserItems[u] = items
			}
			return nil
		}},
		{&popularItemsDef, func(c *rowReader) error {
			popular = append(popular, ranked{c.i32("rank"), store.Scored{Item: c.str("item"), Score: c.f64("score")}})
			return nil
		}},
	}
	for _, s := range steps {
		if err := read(s.def, s.fn); err != nil {
			return nil, fmt.Errorf("load batch %s: %w", run.BatchID, err)
		}
	}
	// A state chain with a batch's rows gone would read as a smaller model:
	// say so rather than serve it.
	if len(run.StateBatches) > 1 && (int64(m.Covisit().Len()) != run.Pairs || int64(m.Popularity().Len()) != run.Items) {
		return nil, fmt.Errorf("load batch %s: its state chain %v holds %d of %d pairs, %d of %d items",
			run.BatchID, run.StateBatches, m.Covisit().Len(), run.Pairs, m.Popularity().Len(), run.Items)
	}
	byRank := func(rs []ranked) []store.Scored {
		slices.SortFunc(rs, func(a, b ranked) int { return cmp.Compare(a.rank, b.rank) })
		out := make([]store.Scored, len(rs))
		for i, r := range rs {
			out[i] = r.s
		}
		return out
	}
	for k, rs := range neighbors {
		l.View.Neighbors[k] = byRank(rs)
	}
	for k, rs := range users {
		l.View.UserRecs[k] = byRank(rs)
	}
	l.View.Popular = byRank(popular)
	return l, nil
}

// Loader reads the current batch from Iceberg, loading each batch once.
// It is safe for concurrent use.
type Loader struct {
	lake   *lakehouse.Lakehouse
	params model.Params

	mu     sync.Mutex
	cached *Loaded
}

// NewLoader returns a Loader of the batches in lake.
func NewLoader(lake *lakehouse.Lakehouse, p model.Params) *Loader {
	return &Loader{lake: lake, params: p}
}

// Latest returns the batch to serve (the pinned one, else the newest; see
// ServedRun), or nil when none was published.
func (l *Loader) Latest(ctx context.Context) (*Loaded, error) {
	loaded, _, err := l.served(ctx)
	return loaded, err
}

// served returns the batch to serve, loaded, and how it is served.
func (l *Loader) served(ctx context.Context) (*Loaded, Served, error) {
	s, ok, err := ServedRun(ctx, l.lake)
	if err != nil || !ok {
		return nil, s, err
	}
	loaded, err := l.load(ctx, s.Run)
	return loaded, s, err
}

// load returns the loaded batch run, from the cache when it is the last one
// loaded.
func (l *Loader) load(ctx context.Context, run Run) (*Loaded, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cached != nil && l.cached.Run.BatchID == run.BatchID {
		return l.cached, nil
	}
	loaded, err := Load(ctx, l.lake, run, l.params)
	if err != nil {
		return nil, err
	}
	l.cached = loaded
	return loaded, nil
}

// Follow publishes every new batch to st until ctx ends, polling batch_runs
// every interval: how a serving store that the batch run cannot reach (the
// in-process store of another process) gets the batch views. A batch the
// store already has is not published again.
func (l *Loader) Follow(ctx context.Context, st store.Store, interval time.Duration, log *slog.Logger) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := l.publishLatest(ctx, st, log); err != nil && ctx.Err() == nil {
			log.Warn("load the current batch view", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Publish publishes the batch to serve (the pinned one, else the newest) to
// st unless it is st's current batch already: what `lambdarec batch pin`,
// `unpin` and `rollback` do for a shared store (ClickHouse) at once, rather
// than wait for the next batch run.
func (l *Loader) Publish(ctx context.Context, st store.Store, log *slog.Logger) error {
	return l.publishLatest(ctx, st, log)
}

func (l *Loader) publishLatest(ctx context.Context, st store.Store, log *slog.Logger) error {
	loaded, s, err := l.served(ctx)
	if err != nil || loaded == nil {
		return err
	}
	cur, ok, err := st.CurrentBatch(ctx)
	if err != nil || ok && cur.BatchID == s.PublishID {
		return err
	}
	// The store keeps the view it is given; neither side modifies it. A
	// batch served again is published under another id (see ServedRun):
	// the view is shared, only its metadata differs.
	v := loaded.View
	if s.PublishID != v.Meta.BatchID {
		c := *v
		c.Meta.BatchID = s.PublishID
		v = &c
	}
	if err := st.PublishBatch(ctx, v); err != nil && !errors.Is(err, store.ErrBatchExists) {
		return fmt.Errorf("publish batch %s: %w", s.PublishID, err)
	}
	log.Info("batch view published", "batch_id", s.PublishID, "pinned", s.Pin.Pinned(), "items", len(v.Neighbors), "users", len(v.UserRecs))
	return nil
}
