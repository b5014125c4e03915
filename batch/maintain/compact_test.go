package maintain

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
)

// TestRemoveFilesKeepsCommittedOutput is the clean-up after a compaction
// whose commit reported an error although it landed (its metadata clean-up
// failed, or the pass was cancelled while the catalog committed): the files
// it would delete are the table's, so it must delete none of them. Before
// the guard it deleted them and the table referenced missing files.
func TestRemoveFilesKeepsCommittedOutput(t *testing.T) {
	l, m := lakeOfThreeBatches(t)
	ctx := context.Background()
	tbl, err := l.LoadTable(ctx, lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := tbl.Scan(table.WithSnapshotID(tbl.CurrentSnapshot().SnapshotID)).PlanFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) == 0 {
		t.Fatal("no data files")
	}
	var live []iceberg.DataFile
	for _, task := range tasks {
		live = append(live, task.File)
	}
	// A cancelled pass context must not stop the check either.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	m.removeFiles(cctx, lakehouse.EventsTable, []table.CompactionGroupResult{{NewDataFiles: live}})
	for _, f := range live {
		if _, err := os.Stat(strings.TrimPrefix(f.FilePath(), "file://")); err != nil {
			t.Errorf("a file the table references was deleted: %v", err)
		}
	}
	if n, last := records(t, l); n != 30 || last != 29 {
		t.Errorf("%d records up to offset %d, want 30 up to 29", n, last)
	}
	if rep, err := m.RunOnce(ctx); err != nil {
		t.Fatalf("a pass after the clean-up: %v (%+v)", err, rep)
	}
}

// TestOrphanStepSparesFilesOfCommitsInFlight is the archive's files waiting
// to be committed (written, then a commit that takes longer than
// orphan_min_age under load) while a pass's orphan step runs: they are
// files no snapshot references yet. Either the step deletes them and the
// commit then fails (the archive writes them again), or the commit lands
// first and the step leaves them; never a table that references a deleted
// file. Before the fix the commit landed on deleted files, and reading the
// table failed with "no such file".
func TestOrphanStepSparesFilesOfCommitsInFlight(t *testing.T) {
	l, m := lakeOfThreeBatches(t)
	ctx := context.Background()
	now := time.Now().UTC()
	old := time.Now().Add(-time.Hour) // past orphan_min_age
	pending := func(from int64) (*table.Table, []iceberg.DataFile) {
		t.Helper()
		tbl, err := l.LoadTable(ctx, lakehouse.EventsTable)
		if err != nil {
			t.Fatal(err)
		}
		files := writeBatch(t, tbl, from, 10, now)
		for _, f := range files {
			if err := os.Chtimes(strings.TrimPrefix(f.FilePath(), "file://"), old, old); err != nil {
				t.Fatal(err)
			}
		}
		return tbl, files
	}
	readable := func(wantRecords, wantLast int64) {
		t.Helper()
		tbl, err := l.LoadTable(ctx, lakehouse.EventsTable)
		if err != nil {
			t.Fatal(err)
		}
		tasks, err := tbl.Scan().PlanFiles(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			if _, err := os.Stat(strings.TrimPrefix(task.File.FilePath(), "file://")); err != nil {
				t.Errorf("the table references a deleted file: %v", err)
			}
		}
		if n, last := records(t, l); n != wantRecords || last != wantLast {
			t.Errorf("%d records up to offset %d, want %d up to %d", n, last, wantRecords, wantLast)
		}
	}

	// The step runs before the commit: it deletes the files, and the
	// commit fails instead of landing on them.
	tbl, files := pending(30)
	var tr TableReport
	if err := m.orphans(ctx, lakehouse.EventsTable, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.OrphansDeleted < len(files) {
		t.Fatalf("orphan step deleted %d files, want at least the %d uncommitted ones", tr.OrphansDeleted, len(files))
	}
	err := commitBatch(l, tbl, files, 30, 10, nil)
	if !errors.Is(err, lakehouse.ErrAddedFileGone) {
		t.Fatalf("commit of deleted files: %v, want %v", err, lakehouse.ErrAddedFileGone)
	}
	readable(30, 29)

	// The commit is in flight when the step plans: the step's plan, made on
	// the table before the commit, names the files; the commit lands before
	// the step deletes, so the step, planning again under the commit lock,
	// leaves them.
	tbl, files = pending(30)
	inBuild, planned := make(chan struct{}), make(chan struct{})
	committed := make(chan error, 1)
	go func() {
		committed <- commitBatch(l, tbl, files, 30, 10, func() {
			select {
			case <-inBuild:
			default:
				close(inBuild)
				<-planned
			}
		})
	}()
	<-inBuild
	var release sync.Once
	m.orphansPlanned = func() { release.Do(func() { close(planned) }) }
	tr = TableReport{}
	err = m.orphans(ctx, lakehouse.EventsTable, &tr)
	select {
	case <-planned:
	default:
		release.Do(func() { close(planned) })
		t.Error("the orphan step found no orphans: the commit's files were not pending when it planned")
	}
	if cerr := <-committed; cerr != nil {
		t.Fatalf("commit in flight: %v", cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	readable(40, 39)
	if rep, err := m.RunOnce(ctx); err != nil {
		t.Fatalf("a pass after the race: %v (%+v)", err, rep)
	}
	readable(40, 39)
}
