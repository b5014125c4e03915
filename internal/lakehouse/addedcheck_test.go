package lakehouse

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/apache/iceberg-go"
	icebergio "github.com/apache/iceberg-go/io"
	"github.com/apache/iceberg-go/table"
)

// TestCommitChecksAddedFilesLocally is Commit's added-file check on a local
// warehouse: the warehouse's file system is a StatIO, so the files an append
// names are checked with one stat each (no open, no read-back of the
// manifests); a named file deleted before the commit fails it with
// ErrAddedFileGone and commits nothing, and so does one the commit does not
// name (found by reading the new manifests back).
func TestCommitChecksAddedFilesLocally(t *testing.T) {
	l := open(t, testConfig(t))
	tbl, err := l.EnsureEvents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := tbl.FS(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fsys.(icebergio.StatIO); !ok {
		t.Fatalf("the local warehouse's file system %T has no Stat: the check would open every added file", fsys)
	}

	commit := func(files, named []iceberg.DataFile, last int64) error {
		var err error
		tbl, err = l.Commit(t.Context(), tbl, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
			return AppendTxn(ctx, cur, files, Offsets{"events": {0: last}}.Properties())
		}, CommitOptions{Appends: named})
		if err != nil {
			tbl, _ = l.LoadTable(t.Context(), EventsTable)
		}
		return err
	}
	files := writeDays(t, tbl, 0, 10)
	if err := commit(files, files, 9); err != nil {
		t.Fatalf("commit of files that exist: %v", err)
	}
	for _, named := range []bool{true, false} {
		files := writeDays(t, tbl, 10, 10)
		if err := os.Remove(strings.TrimPrefix(files[0].FilePath(), "file://")); err != nil {
			t.Fatal(err)
		}
		before := tbl.CurrentSnapshot().SnapshotID
		var names []iceberg.DataFile
		if named {
			names = files
		}
		err := commit(files, names, 19)
		if !errors.Is(err, ErrAddedFileGone) || !strings.Contains(err.Error(), files[0].FilePath()) {
			t.Errorf("commit of a deleted file (named %v): %v, want %v naming %s", named, err, ErrAddedFileGone, files[0].FilePath())
		}
		if tbl.CurrentSnapshot().SnapshotID != before {
			t.Errorf("a failed commit moved the table from snapshot %d to %d", before, tbl.CurrentSnapshot().SnapshotID)
		}
	}
	if n, err := countRows(t.Context(), l); err != nil || n != 10 {
		t.Errorf("the table holds %d rows (%v), want 10", n, err)
	}
}
