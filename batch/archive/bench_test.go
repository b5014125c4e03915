package archive

import (
	"context"
	"os"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/internal/kafka"
)

// BenchmarkArchive measures archive throughput: b.N records (a generated
// stream with 2% duplicates and 1% malformed values) waiting in 6 Kafka
// partitions of the embedded broker are decoded, validated, written to
// Iceberg as Parquet (day partitions, SQLite catalog, local warehouse) and
// committed in micro-batches of the default 50000 records. Producing them is
// not timed. Besides events/s it reports cpu-µs/event: the CPU time (user and
// system) the whole process spent while timed, broker included, per record —
// far less sensitive to other load on the machine than events/s. Run it with
// a fixed count large against the batch size, e.g. -benchtime 500000x.
// ARCHIVE_BENCH_CPUPROFILE=file writes a CPU profile of the timed part only
// (-test.cpuprofile also holds producing the records).
func BenchmarkArchive(b *testing.B) {
	br := startBroker(b)
	cfg := testConfig(b, br)
	cfg.Archive.MaxRecords = 50_000
	cfg.Archive.MaxInterval = 100 * time.Millisecond // a partial last batch does not wait long

	g, err := generate.New(generate.Config{Seed: 7, Start: time.Now().Add(-24 * time.Hour), ClockRate: float64(b.N) / (20 * 3600),
		DupRate: 0.02, MalformedRate: 0.01})
	if err != nil {
		b.Fatal(err)
	}
	cl, err := kafka.Connect(br.Brokers, br.Security, kgo.DefaultProduceTopic(br.topic), kgo.ProducerBatchMaxBytes(4<<20))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	batch := make([]*kgo.Record, 0, 10_000)
	for i := range b.N {
		r := g.Next()
		batch = append(batch, &kgo.Record{Key: r.Key, Value: r.Value})
		if len(batch) == cap(batch) || i == b.N-1 {
			if err := cl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	cl.Close()

	reg := prometheus.NewRegistry()
	a, err := New(cfg, Deps{Registerer: reg, Log: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	handled := func() float64 {
		mfs, _ := reg.Gather()
		n := 0.0
		for _, mf := range mfs {
			if mf.GetName() == "lambdarec_archive_records_total" {
				for _, m := range mf.GetMetric() {
					n += m.GetCounter().GetValue()
				}
			}
		}
		return n
	}
	if path := os.Getenv("ARCHIVE_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				b.Error(err)
			}
		}()
	}
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU(b)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(rctx) }()
	for handled() < float64(b.N) {
		select {
		case err := <-done:
			b.Fatalf("Run: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	elapsed, cpu := time.Since(start), processCPU(b)-cpu0
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/event")
}

// processCPU returns the CPU time (user and system) the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
