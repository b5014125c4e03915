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

// metadataProperties are the table properties that make every commit delete
// the metadata files past MetadataVersionsKept (tables created before
// maintenance existed lack them; lakehouse creates tables keeping 50).
var metadataProperties = iceberg.Properties{
	table.MetadataDeleteAfterCommitEnabledKey: "true",
	table.MetadataPreviousVersionsMaxKey:      strconv.Itoa(MetadataVersionsKept),
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

// manifestsAndExpiry sets metadataProperties where they differ, merges the
// manifests of the current snapshot and expires the snapshots older than
// SnapshotRetention (the current one and every tagged, pinned, one are
// kept, and so are the files they reference), in one commit that moves the
// branch (see advance). A table without a snapshot has nothing to do.
func (m *Maintainer) manifestsAndExpiry(ctx context.Context, name string, tr *TableReport) error {
	tbl, err := m.cfg.Lake.LoadTable(ctx, name)
	if err != nil || tbl.CurrentSnapshot() == nil {
		return err
	}
	fs, err := tbl.FS(ctx)
	if err != nil {
		return err
	}
	mans, err := tbl.CurrentSnapshot().Manifests(fs)
	if err != nil {
		return fmt.Errorf("list manifests: %w", err)
	}
	var (
		res     *table.RewriteManifestsResult
		expired int
	)
	_, err = m.cfg.Lake.Commit(ctx, tbl, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
		res, expired = nil, 0
		txn := cur.NewTransaction()
		props := !propsHave(cur.Properties(), metadataProperties)
		if props {
			if err := txn.SetProperties(metadataProperties); err != nil {
				return nil, err
			}
		}
		err := txn.ExpireSnapshots(
			table.WithOlderThan(m.cfg.Maintenance.SnapshotRetention),
			table.WithRetainLast(1),
			table.WithPostCommit(true))
		if err != nil {
			return nil, err
		}
		staged, err := txn.StagedTable()
		if err != nil {
			return nil, err
		}
		expired = len(cur.Metadata().Snapshots()) - len(staged.Metadata().Snapshots())
		if len(mans) >= 2 {
			if res, err = txn.RewriteManifests(ctx); err != nil {
				return nil, err
			}
		}
		op := "expiry"
		switch {
		case res != nil && !res.IsNoOp():
			op = "manifests"
		case expired == 0 && props:
			op = "metadata properties"
		case expired == 0:
			return txn, nil // commits nothing
		}
		// RewriteManifests takes no summary properties: the empty append
		// carries them, so its replace snapshot is never the current one.
		return txn, advance(ctx, txn, cur, op)
	}, commitOpts)
	if err != nil {
		return err
	}
	tr.SnapshotsExpired = max(0, expired)
	if res != nil && !res.IsNoOp() {
		tr.ManifestsRewritten = len(res.RewrittenManifests)
		tr.ManifestsAdded = len(res.AddedManifests)
	}
	return nil
}

// advance adds to txn an empty append that carries cur's lambdarec.*
// summary properties (lakehouse.WithCarried), so that the commit moves the
// branch. Every commit of a pass does: iceberg-go deletes, after a commit,
// the metadata files that left the log between the commit's base and its
// result, and a writer's commit (the archive's) only asserts the branch's
// snapshot, so a pass commit that left the branch where it was (an expiry,
// a property change) would let a commit built on the table loaded before it
// through; that commit would then delete again the metadata file the pass's
// commit deleted, and iceberg-go logs "Failed to delete old metadata file"
// (through the standard log package) for each. Moving the branch makes it
// conflict instead, and lakehouse.Commit rebuilds it on the reloaded table.
func advance(ctx context.Context, txn *table.Transaction, cur *table.Table, op string) error {
	if cur.CurrentSnapshot() == nil {
		return nil // no writer's commit asserts a snapshot yet
	}
	return txn.AddFiles(ctx, nil, lakehouse.WithCarried(cur, iceberg.Properties{OperationProperty: op}), false)
}

// orphans deletes unreferenced files older than OrphanMinAge, except the
// metadata files iceberg-go's own retention still deletes (see
// metadataFloor). A file written by a commit in flight is unreferenced too
// until the commit lands: the files are planned once without holding
// anything, and when there are any, planned again and deleted inside
// lakehouse.Exclusive, so that no commit of this process lands between the
// table the plan reads and the deletes (one that would add a deleted file
// fails instead: lakehouse.ErrAddedFileGone). Commits of other processes
// are kept safe by OrphanMinAge alone.
func (m *Maintainer) orphans(ctx context.Context, name string, tr *TableReport) error {
	tbl, err := m.cfg.Lake.LoadTable(ctx, name)
	if err != nil {
		return err
	}
	plan, err := m.planOrphans(ctx, tbl)
	if err != nil || len(plan.OrphanFiles()) == 0 {
		return err
	}
	if m.orphansPlanned != nil {
		m.orphansPlanned()
	}
	return m.cfg.Lake.Exclusive(ctx, name, func(ctx context.Context, tbl *table.Table) error {
		plan, err := m.planOrphans(ctx, tbl)
		if err != nil {
			return err
		}
		fsys, err := tbl.FS(ctx)
		if err != nil {
			return err
		}
		floor, floorOK := metadataFloor(tbl)
		var errs []error
		for _, f := range plan.OrphanFiles() {
			if v, ok := metadataVersion(f.Path); ok && (!floorOK || v >= floor) {
				continue // iceberg-go's retention deletes it, or already did
			}
			if err := fsys.Remove(f.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("delete orphan %s: %w", f.Path, err))
				continue
			}
			tr.OrphansDeleted++
			tr.OrphanBytes += f.SizeBytes
		}
		return errors.Join(errs...)
	})
}

// planOrphans lists the files of tbl's location that tbl references in none
// of its snapshots and that are older than OrphanMinAge. iceberg-go lists
// the table's directory and fails on a file that a concurrent commit
// deletes meanwhile (an old metadata.json past
// write.metadata.previous-versions-max): it lists again, a few times.
func (m *Maintainer) planOrphans(ctx context.Context, tbl *table.Table) (table.OrphanCleanupPlan, error) {
	for attempt := 1; ; attempt++ {
		plan, err := tbl.PlanOrphanFiles(ctx,
			table.WithFilesOlderThan(m.cfg.Maintenance.OrphanMinAge),
			table.WithPrefixMismatchMode(table.PrefixMismatchIgnore))
		if err == nil || !errors.Is(err, fs.ErrNotExist) || attempt == 3 {
			return plan, err
		}
	}
}

// metadataFloor returns the version below which a metadata.json file of tbl
// is no longer any commit's to delete, so that the orphan step may: the
// oldest version in tbl's metadata log, less MetadataVersionsKept.
//
// With write.metadata.delete-after-commit.enabled, every commit deletes
// the metadata files that fall out of the log
// (write.metadata.previous-versions-max). An orphan step that deleted such
// a file too would race that commit's delete (the commit loaded the log
// before the file was gone and logs "Failed to delete old metadata file"
// through the standard log package); and a file newer than the table the
// step loaded is unreferenced only because it is newer. So the step leaves
// alone every metadata file from the oldest version of the log on, and the
// MetadataVersionsKept versions below it (dropped by commits that ended
// their deletes long ago: at least that many commits have followed). What
// is left below is what no commit deletes: files dropped by commits that
// do not delete (ref-only commits such as batch pins), left by a commit
// that lost its compare-and-swap in the catalog, or by a writer that died
// before deleting.
func metadataFloor(tbl *table.Table) (int64, bool) {
	oldest, ok := metadataVersion(tbl.MetadataLocation())
	for e := range tbl.Metadata().PreviousFiles() {
		if v, vok := metadataVersion(e.MetadataFile); vok && (!ok || v < oldest) {
			oldest, ok = v, true
		}
	}
	return oldest - MetadataVersionsKept, ok
}

// metadataVersion parses the version of a table metadata file, named
// <version>-<uuid>.metadata.json (optionally compressed:
// <version>-<uuid>.gz.metadata.json) by iceberg-go's catalogs; false for
// any other file.
func metadataVersion(loc string) (int64, bool) {
	base := loc[strings.LastIndexAny(loc, "/\\")+1:]
	if !strings.HasSuffix(base, ".metadata.json") {
		return 0, false
	}
	digits, _, ok := strings.Cut(base, "-")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || v < 0 {
		return 0, false
	}
	return v, true
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
