package lakehouse

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/apache/iceberg-go"
	icebergio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
)

// ErrAddedFileGone is returned by Commit when a data file the commit would
// add no longer exists (the orphan step of a maintenance pass deleted it
// while it waited to be committed): nothing is committed, and the caller
// writes its data again.
var ErrAddedFileGone = errors.New("a data file to commit no longer exists")

// Exclusive runs fn on table name as loaded once no commit of this
// Lakehouse to it is in progress, and lets none start until fn returns.
// A delete of files the table does not reference (maintenance's orphan
// step) runs here: a commit of this process either landed before the load,
// and the loaded table references its files, or starts after fn and finds
// them gone (ErrAddedFileGone) instead of committing a table that
// references a deleted file. Commits of other processes are not held: for
// them the orphan step's minimum age is the guard.
func (l *Lakehouse) Exclusive(ctx context.Context, name string, fn func(ctx context.Context, tbl *table.Table) error) error {
	lock := l.commitLock(strings.Join(l.Ident(name), "."))
	lock.Lock()
	defer lock.Unlock()
	tbl, err := l.LoadTable(ctx, name)
	if err != nil {
		return err
	}
	return fn(ctx, tbl)
}

// checkAdded returns ErrAddedFileGone when a data file that txn adds to
// base is missing. Commit calls it under the table's commit lock, so that
// no Exclusive delete runs between the check and the commit.
//
// When appends names the files txn adds to base (the staged table has
// exactly one snapshot more than base and that snapshot's summary counts as
// many added data files: an AppendTxn of appends, or a snapshot that adds
// none), it stats those files only: one HEAD request per file on S3, one
// stat(2) on a local warehouse (iceberg-go's LocalFS is a StatIO). Otherwise
// (a compaction's rewrite, an append that did not name its files) it reads
// the new snapshot's manifest list and manifests back to find the files it
// adds.
func checkAdded(ctx context.Context, base *table.Table, txn *table.Transaction, appends []iceberg.DataFile) error {
	staged, err := txn.StagedTable()
	if err != nil {
		return fmt.Errorf("stage commit: %w", err)
	}
	snap := staged.CurrentSnapshot()
	baseSnap := base.CurrentSnapshot()
	if snap == nil || (baseSnap != nil && baseSnap.SnapshotID == snap.SnapshotID) {
		return nil
	}
	known := addedDataFiles(snap) == len(appends) && parentIs(snap, baseSnap)
	if known && len(appends) == 0 {
		return nil
	}
	fsys, err := staged.FS(ctx)
	if err != nil {
		return err
	}
	if known {
		for _, f := range appends {
			if err := exists(fsys, f.FilePath()); err != nil {
				return err
			}
		}
		return nil
	}
	mans, err := snap.Manifests(fsys)
	if err != nil {
		return fmt.Errorf("list manifests of snapshot %d: %w", snap.SnapshotID, err)
	}
	for _, m := range mans {
		if m.SnapshotID() != snap.SnapshotID || m.ManifestContent() != iceberg.ManifestContentData || !m.HasAddedFiles() {
			continue
		}
		entries, err := m.FetchEntries(fsys, true)
		if err != nil {
			return fmt.Errorf("read manifest %s: %w", m.FilePath(), err)
		}
		for _, e := range entries {
			if e.Status() != iceberg.EntryStatusADDED || e.SnapshotID() != snap.SnapshotID {
				continue
			}
			if err := exists(fsys, e.DataFile().FilePath()); err != nil {
				return err
			}
		}
	}
	return nil
}

// addedDataFiles returns the count of data files snap's summary says it
// adds, -1 when the summary does not say it in a form this reads.
func addedDataFiles(snap *table.Snapshot) int {
	if snap.Summary == nil {
		return -1
	}
	v, ok := snap.Summary.Properties["added-data-files"]
	if !ok {
		return 0 // iceberg-go leaves out counts of zero
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

// parentIs reports whether snap is a child of parent (nil: a first
// snapshot).
func parentIs(snap, parent *table.Snapshot) bool {
	if parent == nil {
		return snap.ParentSnapshotID == nil
	}
	return snap.ParentSnapshotID != nil && *snap.ParentSnapshotID == parent.SnapshotID
}

// exists returns ErrAddedFileGone when data file path is missing: a stat (a
// HEAD request on S3) where fsys offers one, else an open.
func exists(fsys icebergio.IO, path string) error {
	var err error
	if st, ok := fsys.(icebergio.StatIO); ok {
		_, err = st.Stat(path)
	} else {
		var f icebergio.File
		if f, err = fsys.Open(path); err == nil {
			f.Close()
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrAddedFileGone, path)
	}
	if err != nil {
		return fmt.Errorf("stat added file %s: %w", path, err)
	}
	return nil
}
