package backfill_test

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/lambdarec/lambdarec/batch/backfill"
)

// BenchmarkBackfill loads the same generated stream from JSON lines, delimited
// protobuf and Parquet into a fresh warehouse each, and reports events/s.
// BACKFILL_EVENTS sets the stream's length (default 100,000; the figure in the
// README is for 1,000,000).
func BenchmarkBackfill(b *testing.B) {
	n := 100_000
	if v := os.Getenv("BACKFILL_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	in := writeInputs(b, b.TempDir(), 1, n)
	for _, tc := range []struct{ name, path string }{{"jsonl", in.jsonl}, {"protodelim", in.pb}, {"parquet", in.parquet}} {
		b.Run(tc.name, func(b *testing.B) {
			fi, err := os.Stat(tc.path)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			var events int64
			for b.Loop() {
				b.StopTimer()
				l, err := backfill.New(backfill.Config{Lake: testLake(b)}, discard)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				res, err := l.LoadFile(context.Background(), tc.path, "")
				if err != nil {
					b.Fatal(err)
				}
				events += res.Rows + res.Rejected
			}
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(fi.Size())/float64(n), "bytes/event")
		})
	}
}
