package lakehouse

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/lakehouse/s3test"
	"github.com/lambdarec/lambdarec/schemas"
)

// s3Lake opens a Lakehouse on a SQLite catalog and a warehouse on versitygw,
// reached through a counting proxy.
func s3Lake(t testing.TB) (*Lakehouse, *s3test.Server, *s3test.Counter) {
	t.Helper()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "lake")
	srv.SetEnv(t)
	counter := srv.Count(t)
	cfg := config.Default().Iceberg
	cfg.CatalogURI = "file:" + filepath.Join(t.TempDir(), "catalog.db")
	cfg.Warehouse = "s3://lake/warehouse"
	cfg.S3.Endpoint = counter.Endpoint
	cfg.S3.PathStyle = true
	cfg.S3.Region = s3test.Region
	l, err := Open(context.Background(), cfg, discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, srv, counter
}

// writeDays writes n events spread over two days as data files of tbl
// (one file per day), starting at offset from.
func writeDays(t testing.TB, tbl *table.Table, from, n int) []iceberg.DataFile {
	t.Helper()
	day := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	evs := make([]*schemas.UserInteraction, n)
	for i := range evs {
		evs[i] = event(fmt.Sprintf("e%d", from+i), day.Add(time.Duration(i%2)*24*time.Hour))
	}
	sc, rec := eventRecords(t, tbl, 0, int64(from), evs...)
	files, err := WriteDataFiles(context.Background(), tbl, sc, rec)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// commitFiles commits files as the archive does (AppendTxn on build's
// table, the files named in CommitOptions.Appends) and returns the S3
// requests the commit made.
func commitFiles(l *Lakehouse, c *s3test.Counter, tbl *table.Table, files []iceberg.DataFile, last int64) (*table.Table, []s3test.Request, error) {
	mark := c.Mark()
	committed, err := l.Commit(context.Background(), tbl, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
		return AppendTxn(ctx, cur, files, Offsets{"events": {0: last}}.Properties())
	}, CommitOptions{Appends: files})
	return committed, c.Since(mark), err
}

// countKinds counts reqs by method and by kind of object: "data" (a
// .parquet file), "avro" (a manifest list or manifest) or "other".
func countKinds(reqs []s3test.Request) map[string]int {
	n := map[string]int{}
	for _, r := range reqs {
		kind := "other"
		switch {
		case strings.HasSuffix(r.Path, ".parquet"):
			kind = "data"
		case strings.HasSuffix(r.Path, ".avro"):
			kind = "avro"
		}
		n[r.Method+" "+kind]++
		n[r.Method]++
		n["total"]++
	}
	return n
}

// objectKey returns the key of an s3://lake/... location.
func objectKey(t testing.TB, loc string) string {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// TestCommitChecksAddedFilesOnS3 is Commit's check that the files it adds
// exist, on S3 (versitygw, SQLite catalog): for an append it costs one HEAD
// per added file and reads nothing back (no GET of a data file, no GET of
// the manifest list or manifest the commit just wrote); a file deleted
// before the commit fails it with ErrAddedFileGone and commits nothing,
// both for an append naming its files (CommitOptions.Appends) and for one
// that does not name them, or names too few (the new manifests are read
// back).
func TestCommitChecksAddedFilesOnS3(t *testing.T) {
	l, srv, counter := s3Lake(t)
	tbl, err := l.EnsureEvents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		files := writeDays(t, tbl, i*10, 10)
		if len(files) != 2 {
			t.Fatalf("%d data files, want 2 (one per day)", len(files))
		}
		var reqs []s3test.Request
		tbl, reqs, err = commitFiles(l, counter, tbl, files, int64(i*10+9))
		if err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
		n := countKinds(reqs)
		if n["HEAD data"] != len(files) || n["GET data"] != 0 {
			t.Errorf("commit %d: %d HEAD and %d GET of data files, want %d and 0 (%v)", i, n["HEAD data"], n["GET data"], len(files), reqs)
		}
		for _, r := range reqs {
			if r.Method == "GET" && strings.Contains(r.Path, fmt.Sprint(tbl.CurrentSnapshot().SnapshotID)) {
				t.Errorf("commit %d read back the manifest list it wrote: %s", i, r.Path)
			}
		}
		t.Logf("commit %d: %d requests %v", i, n["total"], n)
	}

	gone := func(name func(files []iceberg.DataFile) []iceberg.DataFile) {
		t.Helper()
		files := writeDays(t, tbl, 30, 10)
		if _, err := srv.Client().DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: aws.String("lake"), Key: aws.String(objectKey(t, files[1].FilePath()))}); err != nil {
			t.Fatal(err)
		}
		before := tbl.CurrentSnapshot().SnapshotID
		_, err := l.Commit(t.Context(), tbl, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
			return AppendTxn(ctx, cur, files, Offsets{"events": {0: 39}}.Properties())
		}, CommitOptions{Appends: name(files)})
		if !errors.Is(err, ErrAddedFileGone) || !strings.Contains(err.Error(), files[1].FilePath()) {
			t.Errorf("commit of a deleted file: %v, want %v naming %s", err, ErrAddedFileGone, files[1].FilePath())
		}
		cur, err := l.LoadTable(t.Context(), EventsTable)
		if err != nil {
			t.Fatal(err)
		}
		if cur.CurrentSnapshot().SnapshotID != before {
			t.Errorf("a failed commit moved the table from snapshot %d to %d", before, cur.CurrentSnapshot().SnapshotID)
		}
	}
	// An append naming its files: they are stat'ed.
	gone(func(files []iceberg.DataFile) []iceberg.DataFile { return files })
	// An append that does not name them: the manifests are read back.
	gone(func([]iceberg.DataFile) []iceberg.DataFile { return nil })
	// One that names only the file still there: the count differs from the
	// snapshot's, so the manifests are read back and find the deleted one.
	gone(func(files []iceberg.DataFile) []iceberg.DataFile { return files[:1] })
	if n, err := countRows(t.Context(), l); err != nil || n != 30 {
		t.Errorf("the table holds %d rows (%v), want 30", n, err)
	}
}

// countRows scans the events table and counts its rows (every data file it
// references must be readable).
func countRows(ctx context.Context, l *Lakehouse) (int64, error) {
	tbl, err := l.LoadTable(ctx, EventsTable)
	if err != nil {
		return 0, err
	}
	_, recs, err := tbl.Scan().ToArrowRecords(ctx)
	if err != nil {
		return 0, err
	}
	var n int64
	for rec, err := range recs {
		if err != nil {
			return n, err
		}
		n += rec.NumRows()
		rec.Release()
	}
	return n, nil
}

// BenchmarkCommitS3 measures an archive-like commit on S3 (versitygw,
// SQLite catalog): two data files appended per commit, the files written
// outside the timer. It reports the S3 requests per commit (all, and HEAD /
// GET / PUT) and the commit's time (ns/op); each run starts from an empty
// table, so compare runs of the same -benchtime (e.g. 40x).
func BenchmarkCommitS3(b *testing.B) {
	l, _, counter := s3Lake(b)
	tbl, err := l.EnsureEvents(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	total := map[string]int{}
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		files := writeDays(b, tbl, i*10, 10)
		b.StartTimer()
		var reqs []s3test.Request
		tbl, reqs, err = commitFiles(l, counter, tbl, files, int64(i*10+9))
		if err != nil {
			b.Fatal(err)
		}
		for k, v := range countKinds(reqs) {
			total[k] += v
		}
	}
	b.StopTimer()
	for _, k := range []string{"total", "HEAD", "GET", "PUT"} {
		b.ReportMetric(float64(total[k])/float64(b.N), k+"-requests/commit")
	}
}
