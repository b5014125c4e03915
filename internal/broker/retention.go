package broker

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Retention and backpressure of the embedded broker.
//
// kfake keeps every record it is given (in memory, or in DataDir's segment
// files) unless a topic has retention configs, and even then applies them
// only on its hourly cleaner. A flood into `lambdarec dev` would grow it
// without bound. With Config.RetentionBytes set, the broker bounds each
// partition of Config.Topics itself, every retentionEvery:
//
//   - it deletes the oldest records of a partition larger than
//     RetentionBytes, but never a record that a group of Config.Protect has
//     not committed past (the archive: a record not yet in the events
//     table). A group that has committed nothing on the topic is not waited
//     for;
//   - it keeps the records from the offsets the groups of Config.Horizon
//     committed (the speed layer's replay horizon: the first record of the
//     oldest session it holds, which a live session can pin for its whole
//     timeout) while it can: it deletes past them only when the partition
//     would otherwise be full, down to 1.5×RetentionBytes, and says so
//     (Trimmed, a metric, a rate-limited log): a restart of that consumer
//     then replays from a later record;
//   - a partition that still holds more than 2×RetentionBytes (the Protect
//     groups lag) is full: produce requests writing to it are answered
//     KAFKA_STORAGE_ERROR, a retriable error, so producers hold their
//     records and retry (a producer's buffer fills and it blocks; the
//     collector answers 503) until the groups catch up and retention frees
//     room. The broker never deletes a record a Protect group has not
//     consumed, and a partition's size stays within 2×RetentionBytes plus
//     the produce requests accepted within one check.
//
// Full partitions are logged (once a minute while they last), counted in
// metrics and reported by Full, which `lambdarec dev` shows in /v1/status.
//
// A partition no Protect group has committed on (the dead-letter topic,
// which no group of lambdarec's reads; the events topic before the
// archive's first commit) is not waited for: its oldest records past
// RetentionBytes are deleted unconsumed. Those deletions are counted
// (lambdarec_broker_retention_unconsumed_deleted_records_total), logged at
// most once a minute per topic and reported by Unconsumed, which `lambdarec
// dev` shows in /v1/status.

// retentionEvery is how often retention and the full partitions are
// evaluated.
const retentionEvery = time.Second

// fullLogEvery is how often a partition that stays full is logged again.
const fullLogEvery = time.Minute

// FullPartition is a partition that refuses produce requests.
type FullPartition struct {
	Topic     string
	Partition int32
	// Bytes is the partition's size; Limit the size past which it refuses.
	Bytes, Limit int64
	// ProtectedOffset is the lowest offset a protected group still needs:
	// retention cannot delete from it on.
	ProtectedOffset int64
	// Since is when it became full.
	Since time.Time
}

// TrimmedPartition is a partition whose log now starts past the offset a
// Horizon group committed: retention deleted records that group would
// replay from, to keep the partition from being full.
type TrimmedPartition struct {
	Topic     string
	Partition int32
	Group     string
	// Committed is the group's committed offset; LogStart where the log
	// starts now.
	Committed, LogStart int64
	// Since is when it was first seen.
	Since time.Time
}

// UnconsumedDeletion counts the records of a topic retention deleted from
// partitions no Protect group had committed on.
type UnconsumedDeletion struct {
	Topic string
	// Records is how many, since the broker started; Last when the last
	// were.
	Records int64
	Last    time.Time
}

// retention enforces Config.RetentionBytes; see the comment above.
type retention struct {
	c       *kfake.Cluster
	topics  []string
	protect []string
	horizon []string
	bytes   int64 // RetentionBytes
	log     *slog.Logger

	ids  map[[16]byte]string // topic IDs of topics, for produce v13+
	full atomic.Pointer[map[string]map[int32]bool]

	mu      sync.Mutex
	fullNow map[tp]FullPartition
	logged  map[tp]time.Time
	trimmed map[tp]TrimmedPartition
	tlogged map[tp]time.Time
	unread  map[string]UnconsumedDeletion // by topic
	ulogged map[string]time.Time

	m retentionMetrics
}

type tp struct {
	topic string
	p     int32
}

type retentionMetrics struct {
	size     *prometheus.GaugeVec
	full     *prometheus.GaugeVec
	refused  prometheus.Counter
	deleted  *prometheus.CounterVec
	horizon  *prometheus.CounterVec
	unread   *prometheus.CounterVec
	register []prometheus.Collector
}

func newRetentionMetrics() retentionMetrics {
	m := retentionMetrics{
		size: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lambdarec_broker_partition_bytes",
			Help: "Bytes the embedded broker holds per partition (broker.retention_bytes bounds what groups have consumed).",
		}, []string{"topic", "partition"}),
		full: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lambdarec_broker_partition_full",
			Help: "1 while the embedded broker refuses produce requests to the partition: it holds more than twice broker.retention_bytes that the archive or the speed layer has not consumed.",
		}, []string{"topic", "partition"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lambdarec_broker_produce_refused_total",
			Help: "Produce requests the embedded broker refused (retriable KAFKA_STORAGE_ERROR) because a partition they write to is full.",
		}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdarec_broker_retention_deleted_records_total",
			Help: "Records the embedded broker deleted by retention (broker.retention_bytes), all consumed by the archive.",
		}, []string{"topic"}),
	}
	m.horizon = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lambdarec_broker_retention_horizon_deleted_records_total",
		Help: "Records the embedded broker deleted before the speed layer's replay horizon to keep a partition from being full: a restart of the speed layer replays from a later record.",
	}, []string{"topic"})
	m.unread = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lambdarec_broker_retention_unconsumed_deleted_records_total",
		Help: "Records the embedded broker deleted by retention from partitions no protecting group (the archive's) had committed on: the dead-letter topic's oldest letters, never read by lambdarec.",
	}, []string{"topic"})
	m.register = []prometheus.Collector{m.size, m.full, m.refused, m.deleted, m.horizon, m.unread}
	return m
}

func newRetention(c *kfake.Cluster, cfg Config, log *slog.Logger) (*retention, error) {
	r := &retention{c: c, topics: cfg.Topics, protect: cfg.Protect, horizon: cfg.Horizon, bytes: cfg.RetentionBytes, log: log,
		ids: map[[16]byte]string{}, fullNow: map[tp]FullPartition{}, logged: map[tp]time.Time{},
		trimmed: map[tp]TrimmedPartition{}, tlogged: map[tp]time.Time{},
		unread: map[string]UnconsumedDeletion{}, ulogged: map[string]time.Time{}, m: newRetentionMetrics()}
	for _, t := range cfg.Topics {
		if ti := c.TopicInfo(t); ti != nil {
			r.ids[ti.TopicID] = t
		}
	}
	if cfg.Registerer != nil {
		for _, col := range r.m.register {
			if err := cfg.Registerer.Register(col); err != nil {
				return nil, fmt.Errorf("register broker metrics: %w", err)
			}
		}
	}
	empty := map[string]map[int32]bool{}
	r.full.Store(&empty)
	c.ControlKey(int16(kmsg.Produce), r.controlProduce)
	return r, nil
}

// run evaluates retention every retentionEvery until ctx ends.
func (r *retention) run(ctx context.Context) {
	t := time.NewTicker(retentionEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.apply(time.Now())
		}
	}
}

// committed is an offset a group committed.
type committed struct {
	group  string
	offset int64
}

// lowest returns, per topic and partition, the lowest offset committed by
// one of groups (the first record one of them still needs).
func (r *retention) lowest(groups []string) map[tp]committed {
	out := map[tp]committed{}
	for _, g := range groups {
		gi := r.c.GroupInfo(g)
		if gi == nil {
			continue
		}
		for topic, ps := range gi.Commits {
			for p, c := range ps {
				k := tp{topic, p}
				if o, ok := out[k]; !ok || c.Offset < o.offset {
					out[k] = committed{g, c.Offset}
				}
			}
		}
	}
	return out
}

// apply deletes what retention allows and recomputes the full and trimmed
// partitions.
func (r *retention) apply(now time.Time) {
	prot, hor := r.lowest(r.protect), r.lowest(r.horizon)
	full := map[string]map[int32]bool{}
	fullNow := map[tp]FullPartition{}
	trimmedNow := map[tp]TrimmedPartition{}
	for _, topic := range r.topics {
		for _, pi := range r.c.PartitionInfos(topic) {
			k := tp{topic, pi.Partition}
			if pi.NumBytes > r.bytes {
				pi = r.trim(k, pi, prot, hor, now)
			}
			size := pi.NumBytes
			r.m.size.WithLabelValues(topic, strconv.Itoa(int(pi.Partition))).Set(float64(size))
			if h, ok := hor[k]; ok && h.offset < pi.LogStartOffset {
				trimmedNow[k] = TrimmedPartition{Topic: topic, Partition: pi.Partition, Group: h.group, Committed: h.offset, LogStart: pi.LogStartOffset, Since: now}
			}
			if size > 2*r.bytes {
				if full[topic] == nil {
					full[topic] = map[int32]bool{}
				}
				full[topic][pi.Partition] = true
				po := int64(-1)
				if c, ok := prot[k]; ok {
					po = c.offset
				}
				fullNow[k] = FullPartition{Topic: topic, Partition: pi.Partition, Bytes: size, Limit: 2 * r.bytes, ProtectedOffset: po, Since: now}
			}
		}
	}
	r.full.Store(&full)

	r.mu.Lock()
	defer r.mu.Unlock()
	for k, f := range fullNow {
		if old, ok := r.fullNow[k]; ok {
			f.Since = old.Since
			fullNow[k] = f
		}
		r.m.full.WithLabelValues(k.topic, strconv.Itoa(int(k.p))).Set(1)
		if last, ok := r.logged[k]; !ok || now.Sub(last) >= fullLogEvery {
			r.logged[k] = now
			r.log.Warn("partition full: refusing produce requests until the archive consumes it",
				"topic", k.topic, "partition", k.p, "bytes", f.Bytes, "limit", f.Limit, "protected_offset", f.ProtectedOffset, "since", f.Since)
		}
	}
	for k := range r.fullNow {
		if _, ok := fullNow[k]; !ok {
			r.m.full.WithLabelValues(k.topic, strconv.Itoa(int(k.p))).Set(0)
			delete(r.logged, k)
			r.log.Info("partition no longer full: accepting produce requests again", "topic", k.topic, "partition", k.p)
		}
	}
	r.fullNow = fullNow
	for k, f := range trimmedNow {
		if old, ok := r.trimmed[k]; ok {
			f.Since = old.Since
			trimmedNow[k] = f
		}
		if last, ok := r.tlogged[k]; !ok || now.Sub(last) >= fullLogEvery {
			r.tlogged[k] = now
			r.log.Warn("retention deleted records before a consumer group's replay horizon, to keep accepting produce requests",
				"topic", k.topic, "partition", k.p, "group", f.Group, "committed", f.Committed, "log_start", f.LogStart, "since", f.Since)
		}
	}
	for k := range r.trimmed {
		if _, ok := trimmedNow[k]; !ok {
			delete(r.tlogged, k)
		}
	}
	r.trimmed = trimmedNow
}

// trim deletes the oldest records of partition k beyond r.bytes that the
// Protect groups have consumed and the Horizon groups have committed past;
// past the Horizon groups only down to 1.5×r.bytes, when keeping their
// records would leave the partition full. It returns the partition after.
func (r *retention) trim(k tp, pi *kfake.PartitionInfo, prot, hor map[tp]committed, now time.Time) *kfake.PartitionInfo {
	records := pi.HighWatermark - pi.LogStartOffset
	if records <= 0 {
		return pi
	}
	// Records are deleted by offset; the bytes per record are the
	// partition's average.
	per := max(1, pi.NumBytes/records)
	upTo := func(keep int64) int64 { return pi.LogStartOffset + (pi.NumBytes-keep+per-1)/per }
	to := upTo(r.bytes)
	if c, ok := prot[k]; ok {
		to = min(to, c.offset)
	}
	if h, ok := hor[k]; ok && h.offset < to {
		to = max(h.offset, min(upTo(r.bytes+r.bytes/2), to))
	}
	to = min(to, pi.HighWatermark)
	if to <= pi.LogStartOffset {
		return pi
	}
	if err := r.c.DeleteRecords(k.topic, k.p, to); err != nil {
		r.log.Warn("retention: delete records", "topic", k.topic, "partition", k.p, "offset", to, "err", err)
		return pi
	}
	r.m.deleted.WithLabelValues(k.topic).Add(float64(to - pi.LogStartOffset))
	if _, ok := prot[k]; !ok {
		r.deletedUnconsumed(k, to-pi.LogStartOffset, now)
	}
	if h, ok := hor[k]; ok && h.offset < to {
		r.m.horizon.WithLabelValues(k.topic).Add(float64(to - max(h.offset, pi.LogStartOffset)))
	}
	r.log.Debug("retention deleted records", "topic", k.topic, "partition", k.p, "from", pi.LogStartOffset, "to", to)
	if after := r.c.PartitionInfo(k.topic, k.p); after != nil {
		return after
	}
	return pi
}

// deletedUnconsumed counts n records of partition k deleted with no Protect
// group's commit on it, and logs it at most once a minute per topic.
func (r *retention) deletedUnconsumed(k tp, n int64, now time.Time) {
	r.m.unread.WithLabelValues(k.topic).Add(float64(n))
	r.mu.Lock()
	defer r.mu.Unlock()
	u := r.unread[k.topic]
	u.Topic, u.Records, u.Last = k.topic, u.Records+n, now
	r.unread[k.topic] = u
	if last, ok := r.ulogged[k.topic]; !ok || now.Sub(last) >= fullLogEvery {
		r.ulogged[k.topic] = now
		r.log.Warn("retention deleted records no protecting group has consumed (a dead-letter topic's oldest letters)",
			"topic", k.topic, "partition", k.p, "deleted", n, "deleted_total", u.Records, "retention_bytes", r.bytes)
	}
}

// Unconsumed returns, by topic, the records retention deleted from
// partitions no Protect group had committed on.
func (r *retention) Unconsumed() []UnconsumedDeletion {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Collect(maps.Values(r.unread))
	slices.SortFunc(out, func(a, b UnconsumedDeletion) int { return strings.Compare(a.Topic, b.Topic) })
	return out
}

// Full returns the partitions that refuse produce requests now, by topic
// and partition.
func (r *retention) Full() []FullPartition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return sortedByPartition(r.fullNow, func(f FullPartition) (string, int32) { return f.Topic, f.Partition })
}

// Trimmed returns the partitions whose log starts past a Horizon group's
// committed offset, by topic and partition.
func (r *retention) Trimmed() []TrimmedPartition {
	r.mu.Lock()
	defer r.mu.Unlock()
	return sortedByPartition(r.trimmed, func(t TrimmedPartition) (string, int32) { return t.Topic, t.Partition })
}

// sortedByPartition returns m's values by topic, then partition.
func sortedByPartition[K comparable, V any](m map[K]V, key func(V) (string, int32)) []V {
	out := slices.Collect(maps.Values(m))
	slices.SortFunc(out, func(a, b V) int {
		ta, pa := key(a)
		tb, pb := key(b)
		return cmp.Or(strings.Compare(ta, tb), cmp.Compare(pa, pb))
	})
	return out
}

// controlProduce answers a produce request that writes to a full partition
// with KAFKA_STORAGE_ERROR for each of its partitions (a retriable error:
// the producer retries the whole request later); any other request is left
// to the broker. It runs on kfake's request loop: it reads only r.full and
// r.ids, never calls the cluster.
func (r *retention) controlProduce(kreq kmsg.Request) (kmsg.Response, error, bool) {
	req, ok := kreq.(*kmsg.ProduceRequest)
	if !ok || req.Acks == 0 {
		return nil, nil, false // acks=0: the producer reads no answer
	}
	full := *r.full.Load()
	if len(full) == 0 {
		return nil, nil, false
	}
	hit := false
	for _, t := range req.Topics {
		name := t.Topic
		if name == "" {
			name = r.ids[t.TopicID]
		}
		for _, p := range t.Partitions {
			if full[name][p.Partition] {
				hit = true
			}
		}
	}
	if !hit {
		return nil, nil, false
	}
	r.c.KeepControl()
	r.m.refused.Inc()
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	resp.Version = req.Version
	for _, t := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = t.Topic
		rt.TopicID = t.TopicID
		for _, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition = p.Partition
			rp.ErrorCode = kerr.KafkaStorageError.Code
			rp.BaseOffset = -1
			rp.LogAppendTime = -1
			rp.LogStartOffset = -1
			msg := "partition full: the archive has not consumed it; retry later"
			rp.ErrorMessage = &msg
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil, true
}
