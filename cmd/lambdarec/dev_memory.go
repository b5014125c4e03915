package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/serving"
)

// dev's memory bounds. Every role shares one process, so dev sizes them for
// one machine: the speed layer's session state (DevSpeedMaxStateBytes,
// DevSpeedMaxSessions unless set), the memory store's session views
// (store.memory.max_session_bytes), the embedded broker's log
// (broker.retention_bytes), the batch runs (batch.max_memory), plus a soft
// memory limit for the Go runtime (dev.max_memory). When a bound bites,
// /v1/status shows it (degraded, with the codes below) for devBoundWindow
// after the last time, its metric counts it, and a WARN line says so at most
// once a minute.

// The /v1/status codes of dev's memory bounds.
const (
	// FaultCodeViewStoreFull: the memory store evicted session views to
	// stay within store.memory.max_session_bytes; those sessions are
	// answered from the batch view until the speed layer writes them
	// again. Layer serving_store, degraded.
	FaultCodeViewStoreFull = "view_store_full"
	// FaultCodeSpeedStateFull: the speed layer evicted live sessions (or
	// dropped retained ones) to stay within its bounds
	// (serving.FaultSpeedStateFull; shown by every role, speed_status.go).
	FaultCodeSpeedStateFull = serving.FaultSpeedStateFull
)

// devBoundWindow is how long after a bound last bit /v1/status still shows
// it.
const devBoundWindow = time.Minute

// devMemoryDefaults gives the speed layer (and its rescoring:
// DevRescoreInterval; its views' scoring: DevScoreViews), the batch runs and the in-process
// consumers' fetches (speed, archive) dev's bounds
// where cfg leaves them at the defaults sized for a process of their own: a
// key the configuration file or the environment wrote keeps its value, even
// the production default's.
func devMemoryDefaults(cfg *config.Config) {
	d := config.Default().Speed
	if devDefault(cfg, "speed.max_state_bytes", cfg.Speed.MaxStateBytes == d.MaxStateBytes) {
		cfg.Speed.MaxStateBytes = config.DevSpeedMaxStateBytes
	}
	if devDefault(cfg, "speed.max_sessions", cfg.Speed.MaxSessions == d.MaxSessions) {
		cfg.Speed.MaxSessions = config.DevSpeedMaxSessions
	}
	if devDefault(cfg, "speed.rescore_interval", cfg.Speed.RescoreInterval == config.DefaultRescoreInterval) {
		cfg.Speed.RescoreInterval = config.DevRescoreInterval
	}
	if devDefault(cfg, "speed.score_views", cfg.Speed.ScoreViews) {
		cfg.Speed.ScoreViews = config.DevScoreViews // serve scores every read at read time
	}
	if devDefault(cfg, "batch.max_memory", cfg.Batch.MaxMemory == config.DefaultBatchMaxMemory) {
		cfg.Batch.MaxMemory = config.DevBatchMaxMemory
	}
	if devDefault(cfg, "kafka.fetch_max_bytes", cfg.Kafka.FetchMaxBytes == 0) {
		cfg.Kafka.FetchMaxBytes = config.DevFetchMaxBytes
	}
	if devDefault(cfg, "kafka.fetch_max_partition_bytes", cfg.Kafka.FetchMaxPartitionBytes == 0) {
		cfg.Kafka.FetchMaxPartitionBytes = config.DevFetchMaxPartitionBytes
	}
}

// devDefault reports whether dev gives key its own value: the user did not
// write it (config.Config.IsSet) and it holds the production default
// (atDefault; a value set by code is kept too).
func devDefault(cfg *config.Config, key string, atDefault bool) bool {
	return atDefault && !cfg.IsSet(key)
}

// devBounds watches dev's bounds for /v1/status and the log. It reads no
// metrics registry: /metrics evaluates /v1/status, which calls faults.
type devBounds struct {
	mem   *store.Memory // nil unless store.backend is memory
	speed *speedStateWatch
}

// newDevBounds registers the memory store's metrics on reg (st is the
// serving store; shed is the speed layer's speed.Layer.LastShed) and returns
// the watcher of dev's bounds.
func newDevBounds(st store.Store, shed func() (uint64, time.Time), reg prometheus.Registerer, log *slog.Logger) (*devBounds, error) {
	b := &devBounds{speed: &speedStateWatch{last: shed, log: log}}
	m, ok := st.(*store.Memory)
	if !ok {
		return b, nil
	}
	b.mem = m
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "lambdarec_store_memory_evicted_sessions_total",
			Help: "Session views the memory store evicted, oldest-updated first, to stay within store.memory.max_session_bytes: those sessions are answered from the batch view until the speed layer writes them again."},
			func() float64 { return float64(m.Evictions().Sessions) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lambdarec_store_memory_sessions",
			Help: "Session views the memory store holds."},
			func() float64 { n, _, _ := m.SessionUsage(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lambdarec_store_memory_session_bytes",
			Help: "Estimated bytes of the session views the memory store holds (bounded by store.memory.max_session_bytes)."},
			func() float64 { _, n, _ := m.SessionUsage(); return float64(n) }),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register memory store metrics: %w", err)
		}
	}
	return b, nil
}

// faults reports the bounds that bit within devBoundWindow.
func (b *devBounds) faults(context.Context) ([]serving.Fault, error) {
	now := time.Now()
	var out []serving.Fault
	if b.mem != nil {
		if ev := b.mem.Evictions(); !ev.Last.IsZero() && now.Sub(ev.Last) < devBoundWindow {
			views, bytes, limit := b.mem.SessionUsage()
			out = append(out, serving.Fault{Layer: serving.StoreLayer, Code: FaultCodeViewStoreFull, State: serving.StateDegraded,
				Message: fmt.Sprintf("the memory store holds %d bytes of session views, its bound store.memory.max_session_bytes is %d: it evicted %d views so far, oldest-updated first (the last %.0fs ago); their sessions are answered from the batch view until the speed layer writes them again",
					bytes, limit, ev.Sessions, now.Sub(ev.Last).Seconds()),
				Details: map[string]any{"views": views, "bytes": bytes, "limit": limit, "evicted": ev.Sessions, "last": ev.Last}})
		}
	}
	if f, ok := b.speed.fault(now); ok {
		out = append(out, f)
	}
	return out, nil
}

// run reads the speed layer's evictions every 10 s, so that they are
// logged while nobody asks /v1/status.
func (b *devBounds) run(ctx context.Context) { b.speed.run(ctx) }
