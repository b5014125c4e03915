package backfill_test

import (
	"context"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/batch/backfill"
)

// cpuTime returns the user+system CPU time of the process so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

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
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				l, err := backfill.New(backfill.Config{Lake: testLake(b)}, discard)
				if err != nil {
					b.Fatal(err)
				}
				before := cpuTime(b)
				b.StartTimer()
				res, err := l.LoadFile(context.Background(), tc.path, "")
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cpu += cpuTime(b) - before
				b.StartTimer()
				events += res.Rows + res.Rejected
			}
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
			// On a shared machine the wall-clock rate depends on the load;
			// the rate per CPU-second (user+system of the process) does not
			// as much.
			b.ReportMetric(float64(events)/cpu.Seconds(), "events/cpu-s")
			b.ReportMetric(float64(fi.Size())/float64(n), "bytes/event")
		})
	}
}
