package generate

import (
	"context"
	"log/slog"
	"testing"

	"github.com/lambdarec/lambdarec/internal/broker"
	"github.com/lambdarec/lambdarec/internal/kafka"
)

// BenchmarkNext measures pure generation: building, encoding and returning
// one record, without any sink.
func BenchmarkNext(b *testing.B) {
	g := newGen(b, Config{Seed: 1})
	b.ReportAllocs()
	var bytes int64
	for b.Loop() {
		bytes += int64(len(g.Next().Value))
	}
	b.SetBytes(bytes / int64(b.N))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRunKafka measures the generator's throughput into the embedded
// broker over TCP: asynchronous franz-go produce, keyed by session, acks=all,
// flushed at the end.
func BenchmarkRunKafka(b *testing.B) {
	br, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Topics: []string{"events"}, Partitions: 6}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	cl, err := kafka.NewClient([]string{br.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	g := newGen(b, Config{Seed: 1, Count: int64(b.N)})
	sink := NewKafkaSink(cl, "events")
	b.ReportAllocs()
	b.ResetTimer()
	st, err := g.Run(context.Background(), sink)
	if err != nil {
		b.Fatal(err)
	}
	if st.Records != int64(b.N) || sink.Acked() != int64(b.N) {
		b.Fatalf("produced %d, acked %d, want %d", st.Records, sink.Acked(), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
