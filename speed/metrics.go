package speed

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/model"
)

// metrics are the layer's Prometheus metrics. The processor keeps plain
// counters; sync copies them here once per poll, off the per-record path.
type metrics struct {
	records       *prometheus.CounterVec
	lag           *prometheus.GaugeVec
	live          prometheus.Gauge
	retained      prometheus.Gauge
	retainedEv    prometheus.Gauge
	stateBytes    prometheus.Gauge
	expired       prometheus.Counter
	evicted       prometheus.Counter
	retainDropped prometheus.Counter
	stateEvicted  prometheus.Counter
	handoffs      prometheus.Counter
	handoffDur    prometheus.Histogram
	regress       prometheus.Counter
	viewWrites    prometheus.Counter
	viewErrors    prometheus.Counter
	flushDur      prometheus.Histogram
	invalid       prometheus.Counter
	commitErrors  prometheus.Counter
	fetchErrors   prometheus.Counter
	faults        *prometheus.GaugeVec
	// shared deltas (deltashare.go) and views scored again (exact when read)
	deltasPublished prometheus.Counter
	deltaErrors     prometheus.Counter
	rescored        prometheus.Counter
	rescoreBacklog  prometheus.Gauge
	rescoreWait     prometheus.Gauge
	rescoreEvery    prometheus.Gauge // rescore_interval_seconds: 0 when rescoring is off (noteRescore)
	// sessions scored at read time (ScoreRecent, readscore.go)
	readScores   *prometheus.CounterVec
	readScoreDur prometheus.Histogram

	lastHandoff atomic.Int64  // unix nanos; 0 before the first
	lagNow      atomic.Int64  // the sum of lag_records as last synced; -1 before the first sync
	progressAt  atomic.Int64  // unix nanos of the last sync that saw records processed or none waiting
	recordAt    atomic.Int64  // unix nanos of the last sync that saw records processed; 0 before
	shed        atomic.Uint64 // evicted + retainDropped as last synced (SessionsShed)
	shedAt      atomic.Int64  // unix nanos of the last sync that saw shed grow; 0 before (LastShed)
	prevN       uint64
	started     time.Time
	prev        counters
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "lambdarec", "speed"
	m := &metrics{started: time.Now()}
	m.lagNow.Store(-1)
	m.progressAt.Store(m.started.UnixNano())
	m.records = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "records_total",
		Help: "Records processed, by outcome: accepted, duplicate, capped, stale (replayed), invalid (dead-lettered by the archive)."}, []string{"outcome"})
	m.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "lag_records",
		Help: "Records of an owned partition not yet processed (high watermark minus position); their sum is the speed lag /v1/status reports, from the same sync."}, []string{"partition"})
	m.live = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "live_sessions",
		Help: "Sessions with a real-time view held in memory."})
	m.retained = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "retained_sessions",
		Help: "Expired or evicted sessions kept until a batch covers their records."})
	m.retainedEv = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "retained_events",
		Help: "Events of retained sessions (bounded by max_retained_events)."})
	m.stateBytes = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "state_bytes",
		Help: "Estimated memory of the sessions, the deltas and the batch row cache."})
	m.expired = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "sessions_expired_total",
		Help: "Sessions expired after session_timeout of record time."})
	m.evicted = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "sessions_evicted_total",
		Help: "Live sessions evicted because max_sessions or max_state_bytes was reached (if they continue, they start over)."})
	m.retainDropped = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "retained_dropped_total",
		Help: "Retained sessions dropped because max_retained_events or max_state_bytes was reached: their records past the boundary are missing from the deltas after the next handoff."})
	m.stateEvicted = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "state_evictions_total",
		Help: "Sessions evicted (live) or dropped (retained) because the sessions' state reached max_state_bytes, oldest first; also counted in sessions_evicted_total or retained_dropped_total."})
	m.handoffs = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "batch_handoffs_total",
		Help: "Switches to a newly published batch."})
	m.handoffDur = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "batch_handoff_duration_seconds",
		Help: "Time to rebuild the deltas for a new batch boundary.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)})
	m.regress = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "boundary_regressions_total",
		Help: "Batches whose boundary was behind the previous one for an owned partition."})
	m.viewWrites = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "view_writes_total",
		Help: "Session views written to the serving store."})
	m.viewErrors = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "view_write_errors_total",
		Help: "Failed writes of views to the serving store (retried)."})
	m.flushDur = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "view_flush_duration_seconds",
		Help: "Time to score and write one group of views.", Buckets: prometheus.ExponentialBuckets(0.0001, 3, 10)})
	m.invalid = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "invalid_records_total",
		Help: "Invalid records skipped (the archive, which owns the dead letters, sends them to the DLQ once)."})
	m.fetchErrors = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "fetch_errors_total",
		Help: "Kafka fetch errors; each poll that has them is followed by a backoff."})
	m.faults = kafka.NewFaultGauge("speed")
	m.commitErrors = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "commit_errors_total",
		Help: "Failed commits of replay horizons."})
	m.deltasPublished = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "shared_delta_records_total",
		Help: "Co-visitation counts published to the shared deltas topic for the other members."})
	m.deltaErrors = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "shared_delta_errors_total",
		Help: "Failed publications to the shared deltas topic (every pair is published again)."})
	m.rescored = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "views_rescored_total",
		Help: "Views of live sessions scored again because a co-visitation row they read changed, without a record of theirs."})
	m.rescoreBacklog = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "rescore_backlog",
		Help: "Live sessions whose rows changed, waiting to be scored again (rescoring is bounded by the records processed); views are exact when read within rescore_interval while it is 0. Always 0 while rescoring is off (rescore_interval_seconds 0)."})
	m.rescoreWait = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "rescore_wait_seconds",
		Help: "How long the oldest queued rescoring has waited since its rows could first have changed (0: none queued): a view read reflects every record consumed up to max(rescore_interval, this) + max_view_delay before the read. Always 0 while rescoring is off."})
	m.rescoreEvery = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "rescore_interval_seconds",
		Help: "speed.rescore_interval: how often views whose rows changed are scored again; 0: rescoring is off (views are scored at their own records only; reads are exact when scored at read time, serve.speed_scorers)."})
	since := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "seconds_since_batch_handoff",
		Help: "Seconds since the layer switched to the batch it serves (since start when it has none)."}, func() float64 {
		if t := m.lastHandoff.Load(); t != 0 {
			return time.Since(time.Unix(0, t)).Seconds()
		}
		return time.Since(m.started).Seconds()
	})
	shedLast := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "sessions_shed_last_timestamp_seconds",
		Help: "Unix time the layer last evicted a live session or dropped a retained one for its bounds (max_sessions, max_state_bytes, max_retained_events), to within a poll; 0 before the first."}, func() float64 {
		if t := m.shedAt.Load(); t != 0 {
			return float64(t) / 1e9
		}
		return 0
	})
	m.readScores = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "read_scores_total",
		Help: "Sessions scored at read time (POST /internal/v1/score), by result: scored, not_ready (answered from the stored view), canceled."}, []string{"result"})
	for _, r := range []string{readScored, readNotReady, readCanceled} {
		m.readScores.WithLabelValues(r)
	}
	m.readScoreDur = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "read_score_duration_seconds",
		Help: "Time to score a session at read time, the wait for the consuming loop's safe point included.", Buckets: prometheus.ExponentialBuckets(0.00001, 3, 12)})
	if reg != nil {
		reg.MustRegister(m.readScores, m.readScoreDur, m.records, m.lag, m.live, m.retained, m.retainedEv, m.stateBytes,
			m.expired, m.evicted, m.retainDropped, m.stateEvicted, m.handoffs, m.handoffDur, m.regress, m.viewWrites, m.viewErrors,
			m.flushDur, m.invalid, m.commitErrors, m.fetchErrors, m.faults, since,
			m.deltasPublished, m.deltaErrors, m.rescored, m.rescoreBacklog, m.rescoreWait, m.rescoreEvery, shedLast)
	}
	return m
}

// SessionsShed returns the live sessions evicted and the retained sessions
// dropped so far for the layer's bounds (max_sessions, max_state_bytes,
// max_retained_events): sessions_evicted_total plus retained_dropped_total,
// as last synced.
func (l *Layer) SessionsShed() uint64 { return l.m.shed.Load() }

// sync exports the processor's state. Called with the layer's lock held.
func (m *metrics) sync(p *processor, now time.Time) {
	c := p.c
	for o, name := range []string{"accepted", "duplicate", "capped", "stale"} {
		if d := c.outcomes[o] - m.prev.outcomes[o]; d > 0 {
			m.records.WithLabelValues(name).Add(float64(d))
		}
	}
	add := func(ctr prometheus.Counter, cur, prev uint64) {
		if cur > prev {
			ctr.Add(float64(cur - prev))
		}
	}
	add(m.records.WithLabelValues("invalid"), c.invalid, m.prev.invalid)
	add(m.expired, c.expired, m.prev.expired)
	add(m.rescored, c.rescored, m.prev.rescored)
	m.rescoreBacklog.Set(float64(len(p.rescoreQ)))
	m.rescoreWait.Set(p.queueWait(now).Seconds())
	add(m.evicted, c.evicted, m.prev.evicted)
	add(m.retainDropped, c.retainDropped, m.prev.retainDropped)
	add(m.stateEvicted, c.stateEvicted, m.prev.stateEvicted)
	if shed := c.evicted + c.retainDropped; shed != m.shed.Load() {
		m.shed.Store(shed)
		m.shedAt.Store(now.UnixNano())
	}
	add(m.handoffs, c.handoffs, m.prev.handoffs)
	add(m.regress, c.boundaryRegress, m.prev.boundaryRegress)
	m.prev = c

	var total int64
	for id, ps := range p.parts {
		if ps.hw < 0 || ps.next < 0 {
			continue
		}
		lag := max(ps.hw-ps.next, 0)
		total += lag
		m.lag.WithLabelValues(strconv.Itoa(int(id))).Set(float64(lag))
	}
	m.lagNow.Store(total)
	m.live.Set(float64(p.nLive))
	retained := 0
	for _, ps := range p.parts {
		retained += ps.retained.n
	}
	m.retained.Set(float64(retained))
	m.retainedEv.Set(float64(c.retainedEvents))
	m.stateBytes.Set(float64(p.stateSize + p.deltaBytes()))

	n := c.outcomes[model.Accepted] + c.outcomes[model.Duplicate] + c.outcomes[model.Capped] + c.outcomes[model.Stale] + c.invalid
	if n != m.prevN {
		m.recordAt.Store(now.UnixNano())
	}
	if n != m.prevN || total == 0 {
		m.progressAt.Store(now.UnixNano())
		m.prevN = n
	}
}

func (m *metrics) forgetPartition(id int32) {
	m.lag.DeleteLabelValues(strconv.Itoa(int(id)))
}
