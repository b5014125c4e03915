// Package kafka owns lambdarec's use of the event log: building franz-go
// clients from the configuration — the one place where every role's TLS and
// SASL settings (kafka.tls, kafka.sasl) become a connection, and where a
// refused or mismatched connection is explained in terms of those keys, never
// with a secret — creating the `events` and `events.dlq` topics, and writing
// rejected records to the dead-letter topic with the reason and their source
// position in headers.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/config"
)

// Dead-letter headers. Every record in the DLQ carries HeaderReason; records
// that came from the events topic also carry their source position.
const (
	HeaderReason          = "lambdarec.reason"
	HeaderSourceTopic     = "lambdarec.source.topic"
	HeaderSourcePartition = "lambdarec.source.partition"
	HeaderSourceOffset    = "lambdarec.source.offset"
	HeaderStage           = "lambdarec.stage"
)

// NewClient returns a franz-go client for brokers with lambdarec's defaults
// (idempotent producer, acks from all replicas) followed by opts.
func NewClient(brokers []string, opts ...kgo.Opt) (*kgo.Client, error) {
	base := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ProducerLinger(5 * time.Millisecond),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client for %v: %w", brokers, err)
	}
	return cl, nil
}

// EnsureTopics creates the topics that do not exist yet with the given
// partition count; topics that exist are left as they are.
func EnsureTopics(ctx context.Context, cl *kgo.Client, partitions int32, topics ...string) error {
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopics(ctx, partitions, -1, nil, topics...)
	if err != nil {
		return fmt.Errorf("create topics %v: %w", topics, err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("create topic %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// DeadLetter returns the record to produce to dlqTopic for src, rejected at
// stage (for example "archive", "speed", "collector") because of reason.
// The value and key are kept byte for byte so nothing is lost.
func DeadLetter(dlqTopic string, src *kgo.Record, stage string, reason error) *kgo.Record {
	r := &kgo.Record{
		Topic: dlqTopic,
		Key:   src.Key,
		Value: src.Value,
		Headers: []kgo.RecordHeader{
			{Key: HeaderReason, Value: []byte(reason.Error())},
			{Key: HeaderStage, Value: []byte(stage)},
		},
	}
	if src.Topic != "" {
		r.Headers = append(r.Headers,
			kgo.RecordHeader{Key: HeaderSourceTopic, Value: []byte(src.Topic)},
			kgo.RecordHeader{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(src.Partition), 10)},
			kgo.RecordHeader{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, src.Offset, 10)},
		)
	}
	return r
}

// Header returns the value of the first header of r named key.
func Header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// RecordClock is the clock a record's event is validated against: the
// record's timestamp, or the wall clock for a record without one. Every
// consumer uses it, so that whether a record is valid does not depend on
// when or by whom it is processed — the archive and the speed layer agree.
func RecordClock(ts time.Time) time.Time {
	if ts.IsZero() || ts.UnixMilli() <= 0 {
		return time.Now()
	}
	return ts
}

// FetchOpts are the fetch bounds k sets (kafka.fetch_max_bytes,
// kafka.fetch_max_partition_bytes), for a consumer's client; none for the
// keys left 0 (franz-go's defaults).
func FetchOpts(k config.Kafka) []kgo.Opt {
	var opts []kgo.Opt
	if k.FetchMaxBytes > 0 {
		opts = append(opts, kgo.FetchMaxBytes(int32(k.FetchMaxBytes)))
	}
	if k.FetchMaxPartitionBytes > 0 {
		opts = append(opts, kgo.FetchMaxPartitionBytes(int32(k.FetchMaxPartitionBytes)))
	}
	return opts
}
