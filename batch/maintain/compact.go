package maintain

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/apache/iceberg-go/table/compaction"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
)

// compact bin-packs the small data files of each partition of table name.
func (m *Maintainer) compact(ctx context.Context, name string, tr *TableReport) error {
	tbl, err := m.cfg.Lake.LoadTable(ctx, name)
	if err != nil || tbl.CurrentSnapshot() == nil {
		return err
	}
	tasks, err := tbl.Scan(table.WithSnapshotID(tbl.CurrentSnapshot().SnapshotID)).PlanFiles(ctx)
	if err != nil {
		return fmt.Errorf("plan files: %w", err)
	}
	target := m.cfg.Maintenance.TargetFileSize
	cc := compaction.DefaultConfig()
	cc.TargetFileSizeBytes = target
	cc.MinFileSizeBytes = target * 3 / 4
	cc.MaxFileSizeBytes = target * 9 / 5
	cc.MinInputFiles = 2
	plan, err := cc.PlanCompaction(tasks)
	if err != nil {
		return err
	}
	if len(plan.Groups) == 0 {
		return nil
	}
	var results []table.CompactionGroupResult
	for _, g := range plan.Groups {
		g, ok := tiered(g)
		if !ok {
			continue
		}
		gr, err := compactGroup(ctx, tbl, g, target)
		if err != nil {
			return fmt.Errorf("compact partition %s: %w", g.PartitionKey, err)
		}
		if len(gr.OldDataFiles) > 0 {
			results = append(results, gr)
		}
	}
	if len(results) == 0 {
		return nil
	}
	// The files are written once; a commit that loses a race with the
	// archive is rebuilt on the reloaded table with its carried properties.
	committed, err := m.cfg.Lake.Commit(ctx, tbl, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
		txn := cur.NewTransaction()
		rw := txn.NewRewrite(lakehouse.WithCarried(cur, iceberg.Properties{OperationProperty: "compaction"}))
		for _, gr := range results {
			rw.ApplyResult(gr)
		}
		if err := rw.Commit(ctx); err != nil {
			return nil, err
		}
		return txn, nil
	}, commitOpts)
	if err != nil {
		if committed == nil { // committed but its clean-up failed: the files are the table's
			m.removeFiles(ctx, name, results)
		}
		return err
	}
	for _, gr := range results {
		tr.CompactedFiles += len(gr.OldDataFiles)
		tr.CompactedInto += len(gr.NewDataFiles)
		tr.CompactedBytes += gr.BytesBefore
	}
	return nil
}

// tiered narrows a planned group to the files worth rewriting now, so that
// compaction's write amplification stays bounded. The planner puts every
// file under 75% of the target of a partition into one group, so today's
// partition, its compacted file plus each pass's few new small files, would
// be rewritten whole at every pass, the compacted file again and again while
// it grows towards the target. Taking the files smallest first, a file joins
// only while it is at most twice the files already taken together: a byte is
// then rewritten only into a file at least 1.5 times the size of the one it
// was in, so at most log1.5(target / smallest file) times, and a partition
// keeps a few files of growing sizes between those rewrites. A group left
// with fewer than two files is not rewritten (ok false): a pass with no new
// data rewrites nothing, and a large file waits until the small ones beside
// it add up to half its size.
func tiered(g compaction.Group) (compaction.Group, bool) {
	tasks := slices.Clone(g.Tasks)
	slices.SortStableFunc(tasks, func(a, b table.FileScanTask) int {
		return cmp.Compare(a.File.FileSizeBytes(), b.File.FileSizeBytes())
	})
	var total int64
	n := 0
	for _, t := range tasks {
		size := t.File.FileSizeBytes()
		if n > 0 && size > 2*total {
			break
		}
		total += size
		n++
	}
	if n < 2 {
		return g, false
	}
	out := compaction.Group{PartitionKey: g.PartitionKey, Tasks: tasks[:n], TotalSizeBytes: total}
	for _, t := range out.Tasks {
		out.DeleteFileCount += len(t.DeleteFiles) + len(t.EqualityDeleteFiles) + len(t.DeletionVectorFiles)
	}
	return out, true
}

// removeFiles deletes the files a compaction wrote but could not commit
// (best effort: orphan cleanup deletes what is left later). A failed commit's
// outcome may be unknown — the pass's context cancelled while the catalog
// committed, an answer lost — so the table is read again first, without the
// pass's cancellation, and nothing is deleted unless that read succeeds and
// references none of the files: deleting a committed file would lose data.
func (m *Maintainer) removeFiles(ctx context.Context, name string, results []table.CompactionGroupResult) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	cur, err := m.cfg.Lake.LoadTable(ctx, name)
	if err != nil {
		m.log.Warn("compaction output left to the orphan step", "table", name, "err", err)
		return
	}
	if snap := cur.CurrentSnapshot(); snap != nil {
		tasks, err := cur.Scan(table.WithSnapshotID(snap.SnapshotID)).PlanFiles(ctx)
		if err != nil {
			m.log.Warn("compaction output left to the orphan step", "table", name, "err", err)
			return
		}
		live := make(map[string]bool, len(tasks))
		for _, t := range tasks {
			live[t.File.FilePath()] = true
		}
		for _, gr := range results {
			for _, df := range gr.NewDataFiles {
				if live[df.FilePath()] {
					m.log.Warn("compaction committed although its commit reported an error", "table", name, "file", df.FilePath())
					return
				}
			}
		}
	}
	fs, err := cur.FS(ctx)
	if err != nil {
		return
	}
	for _, gr := range results {
		for _, df := range gr.NewDataFiles {
			if err := fs.Remove(df.FilePath()); err != nil {
				m.log.Debug("remove uncommitted compaction output", "file", df.FilePath(), "err", err)
			}
		}
	}
}

// compactGroup reads the files of one compaction group and writes them as
// files of about target bytes. It does what iceberg-go's
// ExecuteCompactionGroup does, which cannot be used on events: its scan types
// the map columns' values as nullable where the table says required, and its
// writer then rejects the batches (see lakehouse.Conform). events has no
// delete files, so there are none to carry over.
func compactGroup(ctx context.Context, tbl *table.Table, g compaction.Group, target int64) (table.CompactionGroupResult, error) {
	gr := table.CompactionGroupResult{PartitionKey: g.PartitionKey, BytesBefore: g.TotalSizeBytes}
	sc, err := lakehouse.ArrowSchema(tbl)
	if err != nil {
		return gr, err
	}
	_, recs, err := tbl.Scan(table.WithMaxConcurrency(2)).ReadTasks(ctx, g.Tasks)
	if err != nil {
		return gr, fmt.Errorf("read partition %s: %w", g.PartitionKey, err)
	}
	var convErr error
	conformed := func(yield func(arrow.RecordBatch, error) bool) {
		for rec, err := range recs {
			if err != nil {
				yield(nil, err)
				return
			}
			out, err := lakehouse.Conform(rec, sc)
			rec.Release()
			if err != nil {
				convErr = err
				yield(nil, err)
				return
			}
			if !yield(out, nil) {
				return
			}
		}
	}
	for df, err := range table.WriteRecords(ctx, tbl, sc, conformed, table.WithClusteredWrite(), table.WithTargetFileSize(target)) {
		if err != nil {
			return gr, fmt.Errorf("write partition %s: %w", g.PartitionKey, errors.Join(err, convErr))
		}
		gr.NewDataFiles = append(gr.NewDataFiles, df)
		gr.BytesAfter += df.FileSizeBytes()
	}
	for _, t := range g.Tasks {
		gr.OldDataFiles = append(gr.OldDataFiles, t.File)
	}
	return gr, nil
}
