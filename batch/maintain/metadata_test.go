package maintain

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
)

// metadataWarning is what iceberg-go logs, through the standard log
// package, when a commit deletes a metadata file that is already gone.
const metadataWarning = "Failed to delete old metadata file"

// stdLog is the output of the standard log package while a test runs.
type stdLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *stdLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *stdLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// captureStdLog sends the standard log package's output to the returned
// buffer until the test ends.
func captureStdLog(t *testing.T) *stdLog {
	t.Helper()
	out := &stdLog{}
	prev := log.Writer()
	log.SetOutput(out)
	t.Cleanup(func() { log.SetOutput(prev) })
	return out
}

func noMetadataWarning(t *testing.T, out *stdLog) {
	t.Helper()
	if n := strings.Count(out.String(), metadataWarning); n > 0 {
		t.Errorf("%d metadata delete warnings:\n%s", n, out.String())
	}
}

func records(t *testing.T, l *lakehouse.Lakehouse) (int64, int64) {
	t.Helper()
	tbl, err := l.LoadTable(context.Background(), lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	_, n, _ := currentFiles(context.Background(), tbl)
	o, err := lakehouse.SnapshotOffsets(tbl.Metadata(), tbl.CurrentSnapshot())
	if err != nil {
		t.Fatal(err)
	}
	return n, o.Topic("events")[0]
}

// TestPassRacingCommitsLogsNoMetadataWarning is the archive's commit racing
// a maintenance pass, as in the archive soak: the archive loads the table,
// writes its files, and commits on the table it loaded; a pass commits in
// between. iceberg-go deletes, after each commit, the metadata files that
// left the log between the commit's base and its result, so a commit the
// catalog accepted on a base older than the pass's commits would delete the
// files those commits already deleted again, and log a warning for each.
// Every pass commit advances the branch, so such a commit conflicts and is
// rebuilt on the reloaded table instead: no warning, nothing lost.
func TestPassRacingCommitsLogsNoMetadataWarning(t *testing.T) {
	out := captureStdLog(t)
	l := openLake(t)
	ctx := context.Background()
	now := time.Now().UTC()
	m := newTestMaintainer(t, l)
	for i := range 15 {
		appendBatch(t, l, int64(i*10), 10, now)
	}
	if _, err := m.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the snapshots so far are past the retention

	// The pass commits between the archive's load and its commit. It has
	// nothing to compact or merge: it only expires (a commit that leaves
	// the branch's snapshot where it was, so far).
	stale, err := l.LoadTable(ctx, lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := m.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev := rep.Tables[0]; ev.SnapshotsExpired == 0 || ev.CompactedFiles != 0 || ev.ManifestsRewritten != 0 {
		t.Fatalf("the pass should only expire: %+v", ev)
	}
	appendBatchOn(t, l, stale, 150, 10, now)
	noMetadataWarning(t, out)
	if n, off := records(t, l); n != 160 || off != 159 {
		t.Errorf("%d records up to offset %d, want 160 up to 159", n, off)
	}

	// The same race, many times: appends as fast as they go while passes
	// run back to back, for 4 s and until two passes have run whole beside
	// them (≤ 60 s: a pass can take seconds on a loaded machine).
	pctx, cancel := context.WithCancel(ctx)
	var (
		wg     sync.WaitGroup
		passes atomic.Int64
	)
	wg.Go(func() {
		for pctx.Err() == nil {
			if _, err := m.RunOnce(pctx); err != nil && pctx.Err() == nil {
				t.Errorf("pass: %v", err)
			}
			passes.Add(1)
		}
	})
	off, commits := int64(160), 0
	for start := time.Now(); time.Since(start) < 4*time.Second || passes.Load() < 2 && time.Since(start) < time.Minute; commits++ {
		appendBatch(t, l, off, 10, now)
		off += 10
	}
	cancel()
	wg.Wait()
	t.Logf("%d commits raced %d passes", commits, passes.Load())
	noMetadataWarning(t, out)
	if n, last := records(t, l); n != off || last != off-1 {
		t.Errorf("%d records up to offset %d, want %d up to %d", n, last, off, off-1)
	}
	if passes.Load() < 2 {
		t.Fatalf("only %d passes raced the commits", passes.Load())
	}

	// Bounded: once quiet, the metadata files are the log and the current
	// one.
	time.Sleep(1100 * time.Millisecond)
	if _, err := m.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	tbl, _ := l.LoadTable(ctx, lakehouse.EventsTable)
	if n := countFiles(t, filepath.Join(trimFile(tbl.Location()), "metadata"), ".metadata.json"); n > MetadataVersionsKept+1 {
		t.Errorf("%d metadata files, want at most %d", n, MetadataVersionsKept+1)
	}
	noMetadataWarning(t, out)
}

// TestOrphansLeaveRetainedMetadata checks the orphan step's rule for
// metadata files: it deletes an unreferenced one only when it is
// MetadataVersionsKept versions below the log (no commit deletes it any
// more), and leaves the others, which iceberg-go's delete-after-commit
// deletes or a newer table references; once commits move the log past them
// they go too, so none piles up.
func TestOrphansLeaveRetainedMetadata(t *testing.T) {
	out := captureStdLog(t)
	l := openLake(t)
	ctx := context.Background()
	now := time.Now().UTC()
	m := newTestMaintainer(t, l)
	for i := range 25 {
		appendBatch(t, l, int64(i*10), 10, now)
	}
	if _, err := m.RunOnce(ctx); err != nil { // previous-versions-max 10
		t.Fatal(err)
	}
	tbl, err := l.LoadTable(ctx, lakehouse.EventsTable)
	if err != nil {
		t.Fatal(err)
	}
	cur, ok := metadataVersion(tbl.MetadataLocation())
	if !ok {
		t.Fatalf("metadata file %s: no version", tbl.MetadataLocation())
	}
	dir := filepath.Join(trimFile(tbl.Location()), "metadata")
	old := time.Now().Add(-time.Hour) // past orphan_min_age
	leak := func(v int64) string {
		t.Helper()
		p := filepath.Join(dir, fmt.Sprintf("%05d-00000000-0000-0000-0000-%012d.metadata.json", v, v))
		if err := os.WriteFile(p, []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		return p
	}
	exists := func(p string) bool {
		_, err := os.Stat(p)
		return err == nil
	}
	// Below the floor: a file no commit deletes (a writer that died
	// between its catalog commit and its delete, or a ref-only commit).
	dead := leak(cur - 2*MetadataVersionsKept - 5)
	// Just out of the log: the commit that dropped it may be deleting it.
	dropped := leak(cur - MetadataVersionsKept - 2)
	// Newer than the table the step loads: a commit's in flight.
	newer := leak(cur + 3)

	var tr TableReport
	if err := m.orphans(ctx, lakehouse.EventsTable, &tr); err != nil {
		t.Fatal(err)
	}
	if exists(dead) || !exists(dropped) || !exists(newer) || tr.OrphansDeleted != 1 {
		t.Fatalf("orphans deleted %d: below the floor gone %t, just dropped kept %t, newer kept %t",
			tr.OrphansDeleted, !exists(dead), exists(dropped), exists(newer))
	}

	// Commits move the log on; the files left behind are deleted once
	// below the floor.
	for i := range 2*MetadataVersionsKept + 5 {
		appendBatch(t, l, int64(250+i*10), 10, now)
	}
	tr = TableReport{}
	if err := m.orphans(ctx, lakehouse.EventsTable, &tr); err != nil {
		t.Fatal(err)
	}
	if exists(dropped) || exists(newer) || tr.OrphansDeleted != 2 {
		t.Fatalf("after %d commits: orphans deleted %d, just dropped kept %t, newer kept %t",
			2*MetadataVersionsKept+5, tr.OrphansDeleted, exists(dropped), exists(newer))
	}
	noMetadataWarning(t, out)
}

func TestMetadataVersion(t *testing.T) {
	f := func(loc string, want int64, wantOK bool) {
		t.Helper()
		v, ok := metadataVersion(loc)
		if v != want || ok != wantOK {
			t.Errorf("metadataVersion(%q) = %d, %t; want %d, %t", loc, v, ok, want, wantOK)
		}
	}
	f("file:///w/db/t/metadata/00021-9eb0551f-4d9d-4cd7-8849-7f58235c54a8.metadata.json", 21, true)
	f("s3://b/t/metadata/00000-0f1e.gz.metadata.json", 0, true)
	f(`C:\w\t\metadata\00007-ab.metadata.json`, 7, true)
	f("file:///w/t/metadata/snap-1-1-ab.avro", 0, false)
	f("file:///w/t/metadata/version-hint.text", 0, false)
	f("file:///w/t/metadata/v3.metadata.json", 0, false)
	f("file:///w/t/metadata/-1-ab.metadata.json", 0, false)
	f("file:///w/t/metadata/x-ab.metadata.json", 0, false)
}
