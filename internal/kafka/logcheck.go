package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// A partition's offsets mean something only within one log. A consumer that
// keeps offsets (the archive in Iceberg snapshot summaries, the speed layer
// against the served batch's boundary) keeps, next to them, the topic ID of
// the log they were read from, and checks the broker's log against them: a
// topic deleted and recreated (new topic ID), a log that ends before the
// stored offset (the broker lost its data), or a log that starts after it
// (records deleted before they were read) are faults, never positions to
// silently resume from.

// Fault reasons.
const (
	// FaultTopicRecreated: the topic's ID differs from the stored one — the
	// topic was deleted and created again; its offsets start over.
	FaultTopicRecreated = "topic_recreated"
	// FaultLogTruncated: the partition's end offset (high watermark) is at
	// or below the stored offset — the broker lost records it had served.
	FaultLogTruncated = "log_truncated"
	// FaultLogGap: the partition's log starts past the stored offset + 1 —
	// records after the stored position were deleted before being read.
	FaultLogGap = "log_gap"
	// FaultPartitionMissing: the topic no longer has the partition.
	FaultPartitionMissing = "partition_missing"
)

// LogFault is a partition a consumer stopped because its log no longer
// continues the stored position.
type LogFault struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Reason    string `json:"reason"`
	// StoredOffset is the highest offset the consumer holds (inclusive).
	StoredOffset int64 `json:"stored_offset"`
	// BrokerStartOffset and BrokerEndOffset are the partition's log start
	// and end (high watermark) as the broker reports them; -1 unknown.
	BrokerStartOffset int64  `json:"broker_start_offset"`
	BrokerEndOffset   int64  `json:"broker_end_offset"`
	StoredTopicID     string `json:"stored_topic_id,omitempty"`
	BrokerTopicID     string `json:"broker_topic_id,omitempty"`
	// Since is when the fault was first seen.
	Since time.Time `json:"since"`
}

// String describes f for logs and errors.
func (f LogFault) String() string {
	return fmt.Sprintf("%s/%d: %s (stored offset %d, broker log [%d, %d), topic id %s → %s)",
		f.Topic, f.Partition, f.Reason, f.StoredOffset, f.BrokerStartOffset, f.BrokerEndOffset, f.StoredTopicID, f.BrokerTopicID)
}

// LogView is what the broker says about a topic's log at one moment.
type LogView struct {
	Topic string
	// TopicID is the topic's ID, "" when the broker does not report one.
	TopicID string
	// Start and End are each partition's log start offset and end offset.
	Start, End map[int32]int64
}

// TopicIDString returns the printed form of a topic ID (as in
// LogView.TopicID), "" for the zero ID.
func TopicIDString(id [16]byte) string {
	if id == ([16]byte{}) {
		return ""
	}
	return kadm.TopicID(id).String()
}

// ErrNoTopic is returned by DescribeLog for a topic the broker does not have.
var ErrNoTopic = errors.New("topic does not exist")

// DescribeLog asks the broker for topic's ID and its partitions' start and
// end offsets.
func DescribeLog(ctx context.Context, adm *kadm.Client, topic string) (LogView, error) {
	v := LogView{Topic: topic, Start: map[int32]int64{}, End: map[int32]int64{}}
	// Straight from the broker: kadm answers from the client's cached
	// metadata otherwise, and a franz-go client that uses the topic keeps
	// its first topic ID after the topic is recreated. Asking for the
	// authorized operations is kadm's documented way around the cache.
	tds, err := adm.ListTopics(kadm.WithAuthorizedOps(ctx), topic)
	if err != nil {
		return v, fmt.Errorf("describe topic %s: %w", topic, err)
	}
	td, ok := tds[topic]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return v, fmt.Errorf("describe topic %s: %w", topic, ErrNoTopic)
	}
	if td.Err != nil {
		return v, fmt.Errorf("describe topic %s: %w", topic, td.Err)
	}
	if td.ID != (kadm.TopicID{}) {
		v.TopicID = td.ID.String()
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return v, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return v, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	var errs []error
	for _, lo := range []struct {
		l   kadm.ListedOffsets
		dst map[int32]int64
	}{{starts, v.Start}, {ends, v.End}} {
		lo.l.Each(func(o kadm.ListedOffset) {
			if o.Err != nil {
				errs = append(errs, fmt.Errorf("partition %d: %w", o.Partition, o.Err))
				return
			}
			lo.dst[o.Partition] = o.Offset
		})
	}
	if err := errors.Join(errs...); err != nil {
		return v, fmt.Errorf("offsets of %s: %w", topic, err)
	}
	return v, nil
}

// Check returns the faults of the partitions in held (partition → highest
// offset held, inclusive; -1 for a partition of which nothing is held)
// against v, for a consumer that stored topic ID
// storedID ("" when it has none yet, which skips the ID comparison).
// gaps says whether a log starting past the held offset is a fault (for a
// consumer that must read every record, like the archive).
func (v LogView) Check(storedID string, held map[int32]int64, gaps bool, now time.Time) []LogFault {
	var out []LogFault
	for _, p := range slices.Sorted(maps.Keys(held)) {
		h := held[p]
		f := LogFault{
			Topic: v.Topic, Partition: p, StoredOffset: h, BrokerStartOffset: -1, BrokerEndOffset: -1,
			StoredTopicID: storedID, BrokerTopicID: v.TopicID, Since: now,
		}
		start, okS := v.Start[p]
		end, okE := v.End[p]
		if okS {
			f.BrokerStartOffset = start
		}
		if okE {
			f.BrokerEndOffset = end
		}
		switch {
		case storedID != "" && v.TopicID != "" && storedID != v.TopicID:
			f.Reason = FaultTopicRecreated
		case !okE:
			f.Reason = FaultPartitionMissing
		case end < h+1:
			f.Reason = FaultLogTruncated
		case gaps && okS && h >= 0 && start > h+1:
			f.Reason = FaultLogGap
		default:
			continue
		}
		out = append(out, f)
	}
	return out
}

// faultLogEvery is how often a fault that persists is logged again.
const faultLogEvery = time.Minute

// Faults is the set of a consumer's stopped partitions. It logs each fault
// at ERROR when it appears and at most once a minute while it lasts, and
// keeps a gauge (labels topic, partition, reason) at 1 for each. Safe for
// concurrent use.
type Faults struct {
	stage string
	log   *slog.Logger
	gauge *prometheus.GaugeVec

	mu     sync.Mutex
	m      map[int32]LogFault
	logged map[int32]time.Time
}

// NewFaults returns an empty set for stage ("archive", "speed"); gauge may
// be nil.
func NewFaults(stage string, log *slog.Logger, gauge *prometheus.GaugeVec) *Faults {
	return &Faults{stage: stage, log: log, gauge: gauge, m: map[int32]LogFault{}, logged: map[int32]time.Time{}}
}

// NewFaultGauge returns the gauge a Faults keeps, named
// lambdarec_<stage>_partition_faults.
func NewFaultGauge(stage string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "lambdarec_" + stage + "_partition_faults",
		Help: "Partitions the " + stage + " stopped because their log no longer continues the stored offsets (1 per partition and reason).",
	}, []string{"topic", "partition", "reason"})
}

// Set records f (keeping the first Since of a fault already set) and
// reports whether the partition was not faulted before.
func (s *Faults) Set(f LogFault) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.m[f.Partition]
	if had {
		f.Since = old.Since
		if old.Reason != f.Reason && s.gauge != nil {
			s.gauge.DeleteLabelValues(old.Topic, strconv.Itoa(int(old.Partition)), old.Reason)
		}
	}
	s.m[f.Partition] = f
	if s.gauge != nil {
		s.gauge.WithLabelValues(f.Topic, strconv.Itoa(int(f.Partition)), f.Reason).Set(1)
	}
	s.report(f, time.Now())
	return !had
}

// Clear removes partition p's fault and reports whether it had one.
func (s *Faults) Clear(p int32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.m[p]
	if !ok {
		return false
	}
	delete(s.m, p)
	delete(s.logged, p)
	if s.gauge != nil {
		s.gauge.DeleteLabelValues(f.Topic, strconv.Itoa(int(f.Partition)), f.Reason)
	}
	s.log.Warn("partition log fault cleared", "stage", s.stage, "topic", f.Topic, "partition", p, "reason", f.Reason)
	return true
}

// Forget removes partition p's fault without a word: the consumer no longer
// owns p (the next owner checks it).
func (s *Faults) Forget(p int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.m[p]; ok {
		delete(s.m, p) // s.logged kept: back within a minute, it is not logged again
		if s.gauge != nil {
			s.gauge.DeleteLabelValues(f.Topic, strconv.Itoa(int(f.Partition)), f.Reason)
		}
	}
}

// Has reports whether partition p is faulted.
func (s *Faults) Has(p int32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[p]
	return ok
}

// Len returns the number of faulted partitions.
func (s *Faults) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// List returns the faults by partition.
func (s *Faults) List() []LogFault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]LogFault, 0, len(s.m))
	for _, p := range slices.Sorted(maps.Keys(s.m)) {
		out = append(out, s.m[p])
	}
	return out
}

// Report logs every fault not logged within the last minute.
func (s *Faults) Report() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, p := range slices.Sorted(maps.Keys(s.m)) {
		s.report(s.m[p], now)
	}
}

func (s *Faults) report(f LogFault, now time.Time) {
	if last, ok := s.logged[f.Partition]; ok && now.Sub(last) < faultLogEvery {
		return
	}
	s.logged[f.Partition] = now
	s.log.Error("partition stopped: its log no longer continues the stored offsets",
		"stage", s.stage, "topic", f.Topic, "partition", f.Partition, "reason", f.Reason,
		"stored_offset", f.StoredOffset, "broker_start_offset", f.BrokerStartOffset, "broker_end_offset", f.BrokerEndOffset,
		"stored_topic_id", f.StoredTopicID, "broker_topic_id", f.BrokerTopicID, "since", f.Since)
}

// NewBackoff returns the retry schedule of lambdarec's Kafka and Iceberg
// error paths: exponential from 100ms, ×2 per failure, ±50% jitter, capped
// at 10s; it never gives up (the caller's context ends it). Reset it after
// a success.
func NewBackoff() *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.Multiplier = 2
	b.RandomizationFactor = 0.5
	b.MaxInterval = 10 * time.Second
	b.Reset()
	return b
}

// Sleep waits d or until ctx ends, and reports whether ctx is still alive.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
