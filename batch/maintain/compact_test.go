package maintain

import (
	"context"
	"os"
	"strings"
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
	l := openLake(t)
	ctx := context.Background()
	now := time.Now().UTC()
	for i := range 3 {
		appendBatch(t, l, int64(i*10), 10, now)
	}
	m, err := New(Config{Lake: l, Maintenance: testMaintenance()}, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
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
