package batch

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
)

// ensureTables creates the batch layer's tables that do not exist yet.
func ensureTables(ctx context.Context, lake *lakehouse.Lakehouse) error {
	for _, def := range []*tableDef{&batchRunsDef, &userRecsDef} {
		if err := evolve(ctx, lake, def); err != nil {
			return err
		}
	}
	for _, def := range append([]*tableDef{&batchRunsDef}, viewDefs...) {
		props := iceberg.Properties{"comment": def.doc}
		maps.Copy(props, writeProps)
		t, err := lake.EnsureTable(ctx, def.name, def.schema(), def.spec(), props)
		if err != nil {
			return err
		}
		if err := ensureWriteProps(ctx, lake, t); err != nil {
			return fmt.Errorf("table %s: %w", def.name, err)
		}
	}
	return nil
}

// writeProps are the Parquet settings of the batch tables (those iceberg-go
// writes: batch_runs, compactions; a run's view-table files are written with
// the same codec and no dictionary by partitionFiles). Snappy instead of
// iceberg-go's default zstd, and no dictionary encoding but for the batch id
// (one value per file): the tables are rewritten by every batch and read
// back once or twice, so encoding time matters more than size, and hashing
// every item, user and session id into a dictionary cost a third of the
// writing (measured with BenchmarkWriteRows and `lambdarec bench batch`).
// (The keys are iceberg-go's, which it does not export.)
var writeProps = iceberg.Properties{
	table.ParquetCompressionKey:                           "snappy",
	"parquet.enable.dictionary":                           "false",
	"write.parquet.dict-encoding-enabled.column.batch_id": "true",
}

// ensureWriteProps sets writeProps on t where they differ (a table created by
// an older version).
func ensureWriteProps(ctx context.Context, lake *lakehouse.Lakehouse, t *table.Table) error {
	same := true
	for k, v := range writeProps {
		same = same && t.Properties()[k] == v
	}
	if same {
		return nil
	}
	_, err := lake.Commit(ctx, t, func(ctx context.Context, t *table.Table) (*table.Transaction, error) {
		txn := t.NewTransaction()
		return txn, txn.SetProperties(writeProps)
	}, lakehouse.CommitOptions{})
	return err
}

// LatestRun returns the newest row of batch_runs, the current batch, and
// false when no batch was published yet (or the table does not exist).
func LatestRun(ctx context.Context, lake *lakehouse.Lakehouse) (Run, bool, error) {
	runs, err := Runs(ctx, lake)
	if err != nil || len(runs) == 0 {
		return Run{}, false, err
	}
	return runs[0], true, nil
}

// Runs returns every row of batch_runs, newest first.
func Runs(ctx context.Context, lake *lakehouse.Lakehouse) ([]Run, error) {
	t, err := lake.LoadTable(ctx, TableBatchRuns)
	if errors.Is(err, catalog.ErrNoSuchTable) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if t.CurrentSnapshot() == nil {
		return nil, nil
	}
	var runs []Run
	err = scanRows(ctx, t, nil, func(rec arrow.RecordBatch, i int) error {
		var r Run
		var boundary string
		c := rowReader{rec: rec, i: i}
		r.BatchID = c.str("batch_id")
		r.SourceSnapshotID = c.i64("source_snapshot_id")
		boundary = c.str("boundary")
		r.EventsRead, r.EventsAccepted = c.i64("events_read"), c.i64("events_accepted")
		r.EventsDuplicate, r.EventsCapped = c.i64("events_duplicate"), c.i64("events_capped")
		r.Pairs, r.Items, r.Users = c.i64("pairs"), c.i64("items"), c.i64("users")
		r.MaxEventTime, r.StartedAt, r.FinishedAt = c.ts("max_event_time"), c.ts("started_at"), c.ts("finished_at")
		r.DurationMS, r.Params = c.i64("duration_ms"), c.str("params")
		r.Mode, r.BaseBatchID, r.EventsNew = c.optStr("mode"), c.optStr("base_batch_id"), c.optI64("events_new")
		if sb := c.optStr("state_batches"); sb != "" {
			r.StateBatches = strings.Split(sb, ",")
		}
		if c.err != nil {
			return c.err
		}
		if err := json.Unmarshal([]byte(boundary), &r.Boundary); err != nil {
			return fmt.Errorf("batch %s: boundary %q: %w", r.BatchID, boundary, err)
		}
		runs = append(runs, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(runs, func(a, b Run) int {
		if c := b.FinishedAt.Compare(a.FinishedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.BatchID, a.BatchID)
	})
	return runs, nil
}

// scanRows calls fn for every row of t's current snapshot that matches
// filter (nil: all rows).
func scanRows(ctx context.Context, t *table.Table, filter iceberg.BooleanExpression, fn func(rec arrow.RecordBatch, i int) error) error {
	opts := []table.ScanOption{}
	if filter != nil {
		opts = append(opts, table.WithRowFilter(filter))
	}
	_, batches, err := t.Scan(opts...).ToArrowRecords(ctx)
	if err != nil {
		return fmt.Errorf("scan %s: %w", t.Identifier(), err)
	}
	for rec, err := range batches {
		if err != nil {
			return fmt.Errorf("scan %s: %w", t.Identifier(), err)
		}
		for i := range int(rec.NumRows()) {
			if err := fn(rec, i); err != nil {
				rec.Release()
				return err
			}
		}
		rec.Release()
	}
	return nil
}

// rowReader reads typed values of one row by column name; the first error
// sticks.
type rowReader struct {
	rec arrow.RecordBatch
	i   int
	err error
}

func (c *rowReader) col(name string) arrow.Array {
	idx := c.rec.Schema().FieldIndices(name)
	if len(idx) != 1 {
		if c.err == nil {
			c.err = fmt.Errorf("no column %q", name)
		}
		return nil
	}
	return c.rec.Column(idx[0])
}

func (c *rowReader) str(name string) string {
	if a, ok := c.col(name).(*array.String); ok {
		return a.Value(c.i)
	}
	c.fail(name, "string")
	return ""
}

func (c *rowReader) i64(name string) int64 {
	if a, ok := c.col(name).(*array.Int64); ok {
		return a.Value(c.i)
	}
	c.fail(name, "long")
	return 0
}

func (c *rowReader) i32(name string) int32 {
	if a, ok := c.col(name).(*array.Int32); ok {
		return a.Value(c.i)
	}
	c.fail(name, "int")
	return 0
}

func (c *rowReader) f64(name string) float64 {
	if a, ok := c.col(name).(*array.Float64); ok {
		return a.Value(c.i)
	}
	c.fail(name, "double")
	return 0
}

func (c *rowReader) ts(name string) time.Time {
	if a, ok := c.col(name).(*array.Timestamp); ok {
		return a.Value(c.i).ToTime(a.DataType().(*arrow.TimestampType).Unit).UTC()
	}
	c.fail(name, "timestamp")
	return time.Time{}
}

// optStr reads an optional string column: "" when null or absent.
func (c *rowReader) optStr(name string) string {
	idx := c.rec.Schema().FieldIndices(name)
	if len(idx) != 1 {
		return ""
	}
	a, ok := c.rec.Column(idx[0]).(*array.String)
	if !ok || a.IsNull(c.i) {
		return ""
	}
	return a.Value(c.i)
}

// optI64 reads an optional long column: 0 when null or absent.
func (c *rowReader) optI64(name string) int64 {
	idx := c.rec.Schema().FieldIndices(name)
	if len(idx) != 1 {
		return 0
	}
	a, ok := c.rec.Column(idx[0]).(*array.Int64)
	if !ok || a.IsNull(c.i) {
		return 0
	}
	return a.Value(c.i)
}

func (c *rowReader) fail(name, want string) {
	if c.err == nil {
		c.err = fmt.Errorf("column %q is not a %s", name, want)
	}
}

// cleanup removes the view rows of every batch but the newest Retain ones,
// including rows of runs that died before their batch_runs row.
func (r *Runner) cleanup(ctx context.Context, log *slog.Logger) error {
	runs, err := Runs(ctx, r.cfg.Lake)
	if err != nil {
		return err
	}
	keep := make([]string, 0, r.cfg.Retain)
	for _, run := range runs[:min(len(runs), r.cfg.Retain)] {
		keep = append(keep, run.BatchID)
	}
	// A pinned batch keeps its views however old it gets (served.go).
	if pin, err := CurrentPin(ctx, r.cfg.Lake); err != nil {
		return err
	} else if pin.Pinned() && !slices.Contains(keep, pin.BatchID) {
		keep = append(keep, pin.BatchID)
	}
	if len(keep) == 0 {
		return nil
	}
	// The state tables keep the rows of every batch in the state chains of
	// the kept batches (see state).
	keepState := slices.Clone(keep)
	for _, run := range runs {
		if slices.Contains(keep, run.BatchID) {
			for _, id := range run.stateBatches() {
				if !slices.Contains(keepState, id) {
					keepState = append(keepState, id)
				}
			}
		}
	}
	// The tables are independent: clean them concurrently.
	start := time.Now()
	errs := make([]error, len(viewDefs))
	var wg sync.WaitGroup
	for i, def := range viewDefs {
		keep := keep
		if def.state() {
			keep = keepState
		}
		wg.Go(func() {
			if err := r.dropOld(ctx, def, keep); err != nil {
				errs[i] = fmt.Errorf("clean %s: %w", def.name, err)
			}
		})
	}
	wg.Wait()
	err = errors.Join(errs...)
	if err == nil {
		log.Info("old batch views removed", "kept", keep, "state_kept", keepState, "elapsed", time.Since(start).Round(time.Millisecond))
	}
	return err
}

// dropOld removes from def's table the rows of every batch not in keep.
func (r *Runner) dropOld(ctx context.Context, def *tableDef, keep []string) error {
	t, err := r.cfg.Lake.LoadTable(ctx, def.name)
	if err != nil {
		return err
	}
	// Planning reads only manifests (the table is partitioned by batch id).
	files, err := t.Scan(table.WithRowFilter(iceberg.NotIn(iceberg.Reference("batch_id"), keep...))).PlanFiles(ctx)
	if err != nil {
		return err
	}
	// Delete the old batches by their partition values: an exact match on
	// the partition drops whole files, where a NotIn on long ids with
	// truncated column statistics would rewrite kept files.
	var old []string
	for _, f := range files {
		if id, ok := f.File.Partition()[batchIDField].(string); ok && !slices.Contains(old, id) && !slices.Contains(keep, id) {
			old = append(old, id)
		}
	}
	if len(old) == 0 {
		return nil
	}
	_, err = r.cfg.Lake.Commit(ctx, t, func(ctx context.Context, t *table.Table) (*table.Transaction, error) {
		txn := t.NewTransaction()
		return txn, txn.Delete(ctx, iceberg.IsIn(iceberg.Reference("batch_id"), old...), nil)
	}, lakehouse.CommitOptions{})
	return err
}
