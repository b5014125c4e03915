package lakehouse

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/apache/iceberg-go"
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
func checkAdded(ctx context.Context, base *table.Table, txn *table.Transaction) error {
	staged, err := txn.StagedTable()
	if err != nil {
		return fmt.Errorf("stage commit: %w", err)
	}
	snap := staged.CurrentSnapshot()
	if snap == nil || (base.CurrentSnapshot() != nil && base.CurrentSnapshot().SnapshotID == snap.SnapshotID) {
		return nil
	}
	fsys, err := staged.FS(ctx)
	if err != nil {
		return err
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
			f, err := fsys.Open(e.DataFile().FilePath())
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("%w: %s", ErrAddedFileGone, e.DataFile().FilePath())
			}
			if err != nil {
				return fmt.Errorf("open added file %s: %w", e.DataFile().FilePath(), err)
			}
			f.Close()
		}
	}
	return nil
}
