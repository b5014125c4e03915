package maintain

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/schemas"
)

// metadataProperties makes sure the table deletes old metadata files on
// commit (tables created before maintenance existed lack the properties).
func (m *Maintainer) metadataProperties(ctx context.Context, name string) error {
	want := iceberg.Properties{
		table.MetadataDeleteAfterCommitEnabledKey: "true",
		table.MetadataPreviousVersionsMaxKey:      strconv.Itoa(MetadataVersionsKept),
	}
	tbl, err := m.cfg.Lake.LoadTable(ctx, name)
	if err != nil {
		return err
	}
	if propsHave(tbl.Properties(), want) {
		return nil
	}
	_, err = m.cfg.Lake.Commit(ctx, tbl, func(_ context.Context, cur *table.Table) (*table.Transaction, error) {
		txn := cur.NewTransaction()
		if err := txn.SetProperties(want); err != nil {
			return nil, err
		}
		return txn, nil
	}, commitOpts)
	return err
}

func propsHave(have, want iceberg.Properties) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// pins removes pins older than PinMaxAge and counts the others.
func (m *Maintainer) pins(ctx context.Context, name string, tr *TableReport) error {
	cutoff := m.cfg.Now().Add(-m.cfg.Maintenance.PinMaxAge)
	n, err := m.cfg.Lake.RemovePins(ctx, name, func(p lakehouse.Pin) bool {
		if p.At.Before(cutoff) {
			m.log.Warn("stale batch pin removed", "table", name, "tag", p.Tag, "snapshot", p.SnapshotID, "pinned_at", p.At)
			return true
		}
		return false
	})
	tr.PinsRemoved = n
	if tbl, lerr := m.cfg.Lake.LoadTable(ctx, name); lerr == nil {
		tr.Pinned = len(lakehouse.Pins(tbl.Metadata()))
	}
	return err
}

// retention deletes the day partitions of events older than
// Retention.Events: the cutoff is rounded down to a UTC day, so only whole
// days go (their files are dropped, none is rewritten).
func (m *Maintainer) retention(ctx context.Context, tr *TableReport) error {
	cutoff := m.cfg.Now().UTC().Add(-m.cfg.Retention.Events).Truncate(24 * time.Hour)
	filter := iceberg.LessThan(iceberg.Reference(schemas.ColumnTimestamp), iceberg.Timestamp(cutoff.UnixMicro()))
	tbl, err := m.cfg.Lake.LoadTable(ctx, lakehouse.EventsTable)
	if err != nil || tbl.CurrentSnapshot() == nil {
		return err
	}
	tasks, err := tbl.Scan(table.WithRowFilter(filter)).PlanFiles(ctx)
	if err != nil {
		return fmt.Errorf("plan files before %s: %w", cutoff.Format(time.DateOnly), err)
	}
	if len(tasks) == 0 {
		return nil
	}
	_, err = m.cfg.Lake.Commit(ctx, tbl, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
		txn := cur.NewTransaction()
		props := lakehouse.WithCarried(cur, iceberg.Properties{OperationProperty: "retention"})
		if err := txn.Delete(ctx, filter, props); err != nil {
			return nil, err
		}
		return txn, nil
	}, commitOpts)
	if err != nil {
		return err
	}
	tr.RetentionFilesDeleted = len(tasks)
	m.log.Info("events past retention deleted", "before", cutoff.Format(time.DateOnly), "files", len(tasks))
	return nil
}

// expire expires the snapshots older than SnapshotRetention; the current
// one and every tagged (pinned) one are kept, and so are the files they
// reference.
func (m *Maintainer) expire(ctx context.Context, name string, tr *TableReport) error {
	tbl, err := m.cfg.Lake.LoadTable(ctx, name)
	if err != nil || tbl.CurrentSnapshot() == nil {
		return err
	}
	before := 0
	committed, err := m.cfg.Lake.Commit(ctx, tbl, func(_ context.Context, cur *table.Table) (*table.Transaction, error) {
		before = len(cur.Metadata().Snapshots())
		txn := cur.NewTransaction()
		err := txn.ExpireSnapshots(
			table.WithOlderThan(m.cfg.Maintenance.SnapshotRetention),
			table.WithRetainLast(1),
			table.WithPostCommit(true))
		if err != nil {
			return nil, err
		}
		return txn, nil
	}, commitOpts)
	if err != nil {
		return err
	}
	tr.SnapshotsExpired = max(0, before-len(committed.Metadata().Snapshots()))
	return nil
}

// orphans deletes unreferenced files older than OrphanMinAge.
func (m *Maintainer) orphans(ctx context.Context, name string, tr *TableReport) error {
	tbl, err := m.cfg.Lake.LoadTable(ctx, name)
	if err != nil {
		return err
	}
	// iceberg-go lists the table's directory and fails on a file that a
	// concurrent commit deletes meanwhile (an old metadata.json past
	// write.metadata.previous-versions-max): list again, a few times.
	var res table.OrphanCleanupResult
	for attempt := 1; ; attempt++ {
		res, err = tbl.DeleteOrphanFiles(ctx,
			table.WithFilesOlderThan(m.cfg.Maintenance.OrphanMinAge),
			table.WithPrefixMismatchMode(table.PrefixMismatchIgnore))
		if err == nil || !errors.Is(err, fs.ErrNotExist) || attempt == 3 {
			break
		}
	}
	if err != nil {
		return err
	}
	tr.OrphansDeleted = len(res.DeletedFiles)
	tr.OrphanBytes = res.TotalSizeBytes
	return nil
}

// localSize returns the size of a file:// location, or 0.
func localSize(loc string) int64 {
	p, ok := strings.CutPrefix(loc, "file://")
	if !ok {
		return 0
	}
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}
