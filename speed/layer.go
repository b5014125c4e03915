package speed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/obs"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/schemas"
)

// Deps are the Layer's collaborators.
type Deps struct {
	// Views receives the real-time view. Required.
	Views ViewWriter
	// Batches tells the layer about published batches. Nil: no batch is
	// ever served and every record counts in the deltas.
	Batches BatchSource
	// Log is the logger; nil discards.
	Log *slog.Logger
	// Registerer registers the layer's metrics; nil keeps them private.
	Registerer prometheus.Registerer
}

// idleWait bounds a poll when no records come, so handoffs, commits and
// view expiry still happen.
const idleWait = 100 * time.Millisecond

// Layer is the speed layer: a member of the consumer group on the events
// topic. Create it with New and run it with Run.
type Layer struct {
	cfg   Config
	log   *slog.Logger
	src   BatchSource
	views ViewWriter
	m     *metrics

	pending chan *Batch // the newest batch the poller found, not yet served
	served  atomic.Pointer[string]
	ready   atomic.Bool
	// positions is Positions' answer as of the last poll or assignment
	// change: status reads it without waiting for a poll being processed.
	positions atomic.Pointer[positions]
	ends      atomic.Pointer[map[int32]int64] // end offsets of the events topic, listed by watchEnds

	mu         layerMu // guards everything below, between polls and rebalance callbacks; reads share its rows lock (readscore.go)
	proc       *processor
	cl         *kgo.Client
	buf        []store.SessionView
	writing    []store.SessionView // the views being written (flush), nil when none
	writeDone  chan writeResult    // the result of writing them
	recs       []*kgo.Record       // the poll being processed
	fetchPool  fetchPool           // the consuming client's decompression buffers and record slices
	smallPoll  bool                // the last poll had fewer than smallPoll records
	lastPoll   int                 // the last poll's records (behind)
	busy       time.Duration       // the loop's time between the last poll and the one before (behind)
	dec        []decoded           // its records decoded
	evs        []*schemas.UserInteraction
	failed     []store.SessionView // views whose write failed, retried first
	lastCommit time.Time
	lastExpire time.Time
	closing    bool
	joined     bool      // a group assignment was received
	rs         sync.Pool // ScoreRecent's scorers and buffers, *readScorer (readscore.go)

	cmu        sync.Mutex            // guards committed and commitHold (commit callbacks)
	committed  map[int32]commitPoint // last committed per partition
	commitBo   *backoff.ExponentialBackOff
	commitHold time.Time // after a failed commit, no commit before this

	// The log the layer reads, and its checks (see logcheck.go).
	topicID   string // the topic ID seen at start ("" unknown)
	faults    *kafka.Faults
	fetchBo   *backoff.ExponentialBackOff
	admCl     *kgo.Client // checks the log: a client of its own, whose metadata no consumer cursor holds
	lastCheck time.Time
	seen      map[int32]int64 // next offset per partition ever reached, kept across rebalances (guarded by mu)
	checkDue  atomic.Bool

	// The shared deltas (deltashare.go).
	deltaParts    int32 // partitions of DeltasTopic; 0 until it is known
	pubBuf        []*kgo.Record
	publishFailed atomic.Bool
	lastPublish   time.Time
	sinceRescore  int         // records processed since the rescoring queue was last collected
	pace          rescorePace // the marking of the queue collected last (rescore.go)
	eventParts    int32       // partitions of the events topic (at start, at each assignment); 0 unknown
	deltasReady   atomic.Bool // the deltas topic was read up to its end at start

	trace func(loopStep)
	step  loopStep
}

// New returns a layer; it does not connect until Run.
func New(cfg Config, deps Deps) (*Layer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.Views == nil {
		return nil, errors.New("speed: no view writer")
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	faultLog := log // fault reports have their own limit: one per partition a minute
	// One line a second per warning: a broker gone or a topic recreated
	// makes every poll fail at once.
	log = obs.RateLimit(log, slog.LevelWarn, time.Second)
	proc, err := newProcessor(limits{
		sessionTimeout:    cfg.SessionTimeout,
		maxSessions:       cfg.MaxSessions,
		maxRetainedEvents: cfg.MaxRetainedEvents,
		maxStateBytes:     int(min(cfg.MaxStateBytes, int64(math.MaxInt))),
		viewItems:         cfg.ViewItems,
		noExplain:         cfg.NoExplanations,
		noRescore:         cfg.NoRescore,
		noScore:           cfg.NoViewScores,
	}, *cfg.Params, log)
	if err != nil {
		return nil, fmt.Errorf("speed: %w", err)
	}
	l := &Layer{
		cfg: cfg, log: log, src: deps.Batches, views: deps.Views, m: newMetrics(deps.Registerer),
		pending: make(chan *Batch, 1), proc: proc,
		committed: map[int32]commitPoint{}, commitBo: kafka.NewBackoff(), fetchBo: kafka.NewBackoff(), seen: map[int32]int64{},
	}
	l.faults = kafka.NewFaults("speed", faultLog, l.m.faults)
	l.noteRescore()
	none := ""
	l.served.Store(&none)
	return l, nil
}

// Run consumes until ctx ends, then writes the pending views, commits the
// replay horizons, leaves the group and returns.
func (l *Layer) Run(ctx context.Context) error {
	// Serve the current batch before consuming, so the replay counts exactly
	// the records past its boundary.
	if l.src != nil {
		b, err := l.src.Latest(ctx)
		if err != nil {
			l.log.Warn("batch source unavailable at start; counting every record until a batch is served", "err", err)
		} else if b != nil {
			l.mu.Lock()
			l.switchBatch(b)
			l.mu.Unlock()
		}
	}
	opts := []kgo.Opt{
		kgo.ConsumerGroup(l.cfg.Group),
		kgo.ConsumeTopics(l.cfg.Topic),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), // the shared deltas go to the partition they name
		kgo.OnPartitionsAssigned(l.assigned),
		kgo.OnPartitionsRevoked(l.revoked),
		kgo.OnPartitionsLost(l.lost),
		kafka.LogGroupErrors(l.log, l.cfg.Security, 10*time.Second),
		kgo.WithPools(&l.fetchPool), // recycled once processed (recycle)
	}
	if l.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(l.cfg.InstanceID))
	}
	cl, err := kafka.Connect(l.cfg.Brokers, l.cfg.Security, append(opts, l.cfg.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("speed: %w", err)
	}
	// Not fatal (the cluster may come back, a password may be fixed), but
	// said at once: a member that cannot connect is otherwise only not ready.
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	if err := kafka.Check(cctx, cl, l.cfg.Security); err != nil && ctx.Err() == nil {
		l.log.Error("kafka connection check", "err", err)
	}
	ccancel()
	l.mu.Lock()
	l.cl = cl
	l.lastCommit = time.Now()
	l.closing = false // Run may be called again after it returned (dev restarts a failed role)
	l.mu.Unlock()
	l.admCl, err = kafka.Connect(l.cfg.Brokers, l.cfg.Security)
	if err != nil {
		cl.Close()
		return fmt.Errorf("speed: %w", err)
	}
	defer l.admCl.Close()
	l.topicID = l.startTopicID(ctx)
	n, err := l.ensureDeltasTopic(ctx)
	if err != nil && ctx.Err() == nil {
		// Not fatal: the layer runs, scoring from its own partitions' deltas
		// only, and is never ready (nor exact with other members). A stop
		// during the look-up is no error: the loop below ends at once.
		l.log.Error("shared deltas topic unavailable", "err", err)
	}
	l.mu.Lock()
	l.deltaParts = n
	l.mu.Unlock()

	pctx, stopPoller := context.WithCancel(ctx)
	var pollers sync.WaitGroup
	if l.src != nil {
		pollers.Go(func() { l.pollBatches(pctx) })
	}
	if n > 0 {
		pollers.Go(func() { l.consumeDeltas(pctx) })
	}
	pollers.Go(func() { l.watchEnds(pctx) })
	l.log.Info("speed layer consuming", "topic", l.cfg.Topic, "group", l.cfg.Group, "brokers", l.cfg.Brokers)
	l.trace = loopTraceHook
	var polled time.Time // when the last poll returned
	for ctx.Err() == nil {
		var tr loopStep // the poll's times, for loopTraceHook
		pollStart := time.Now()
		if l.trace != nil {
			tr.PollStart = pollStart
		}
		busy := time.Duration(0)
		if !polled.IsZero() {
			busy = pollStart.Sub(polled)
		}
		wctx, cancel := context.WithTimeout(ctx, l.pollWait(pollStart))
		fs := cl.PollRecords(wctx, l.cfg.MaxPollRecords)
		cancel()
		polled = time.Now()
		if fs.IsClientClosed() {
			break
		}
		if l.trace != nil {
			tr.polled(fs)
		}
		l.mu.Lock()
		l.busy = busy
		failed := l.process(ctx, fs)
		recycle(fs)
		if l.trace != nil {
			tr.Processed = time.Now()
		}
		l.afterPoll(ctx, time.Now())
		st := l.step // what the flushes of this poll added (guarded by l.mu)
		l.step = loopStep{}
		l.mu.Unlock()
		if l.trace != nil {
			tr.done(l, st)
		}
		cl.AllowRebalance()
		if failed {
			// A fetch error repeats at once until its cause is gone (a
			// broker down, a topic recreated): look at the log, back off.
			l.checkLog(ctx, true)
			if !kafka.Sleep(ctx, l.fetchBo.NextBackOff()) {
				break
			}
		} else {
			l.fetchBo.Reset()
			l.checkLog(ctx, false)
		}
	}
	stopPoller()
	pollers.Wait()

	// Final flush and commit, on a context that outlives ctx.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	l.mu.Lock()
	l.proc.rescoreChanged(time.Now(), 0, -1)
	ferr := l.flushNow(sctx, time.Now())
	l.publishDeltas(sctx, pubFinal)
	cerr := l.commit(sctx, true, nil)
	l.closing = true
	l.mu.Unlock()
	if err := cl.Flush(sctx); err != nil {
		l.log.Warn("publish shared deltas at stop", "err", err)
	}
	cl.Close()
	l.log.Info("speed layer stopped")
	return errors.Join(ferr, cerr)
}

// process runs the polled records through the processor and reports
// whether the poll had fetch errors.
func (l *Layer) process(ctx context.Context, fs kgo.Fetches) (failed bool) {
	fs.EachError(func(topic string, p int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return
		}
		failed = true
		l.m.fetchErrors.Inc()
		l.log.Warn("fetch error", "topic", topic, "partition", p, "err", err)
	})
	// Flatten the poll, decode it in parallel, then apply it in order.
	l.recs = l.recs[:0]
	for _, f := range fs {
		for _, t := range f.Topics {
			if id := kafka.TopicIDString(t.TopicID); id != "" && l.topicID != "" && id != l.topicID {
				failed = true // another log than the one started on: checked, never applied
				continue
			}
			for _, ft := range t.Partitions {
				if l.faults.Has(ft.Partition) {
					continue // stopped: its log no longer continues what the layer holds
				}
				if ps := l.proc.parts[ft.Partition]; ps != nil && ft.Err == nil {
					ps.hw = max(ps.hw, ft.HighWatermark) // a fetch may be older than watchEnds' look
				}
				l.recs = append(l.recs, ft.Records...)
			}
		}
	}
	l.decodeAll()
	l.yieldToReads()
	l.proc.waitSettle() // a settle's goroutines add to the shares whose dictionaries the records intern into
	l.smallPoll = len(l.recs) < smallPoll
	l.lastPoll = len(l.recs)
	l.sinceRescore += len(l.recs)
	l.proc.beginApply(len(l.recs)) // a large poll's rows are kept up on both cores (applypar.go)
	for i, r := range l.recs {
		if _, err := l.proc.applyDecoded(r.Partition, r.Offset, r.Timestamp, &l.dec[i]); err != nil {
			// Counted only: the archive owns the dead letters, so each bad
			// record reaches the DLQ once whatever the speed layer replays.
			l.m.invalid.Inc()
		}
		if i%512 == 511 && l.flushDueInPoll() {
			l.flush(ctx, time.Now()) //nolint:errcheck // logged and retried
		}
		if i%readYieldEvery == readYieldEvery-1 {
			l.yieldToReads() // a safe point: every record so far applied
		}
	}
	l.proc.endApply()
	clear(l.recs)
	clear(l.dec)
	l.proc.startSettle() // once enough is logged; overlaps the scoring and writing of the views
	return failed
}

// recycle hands the buffers of a processed poll's records back to the
// client's pool (fetchPool): nothing reads a record's bytes once process
// returned.
func recycle(fs kgo.Fetches) {
	fs.EachRecord((*kgo.Record).Recycle)
}

// The rescoring budget of one RescoreInterval: one view per rescorePer
// records processed since the last time, plus minRescore. Measured
// (BenchmarkThroughput, one member): one view per record more than doubled
// the layer's CPU per event (views/event 0.32 → 1.53).
const (
	rescorePer = 4
	minRescore = 500
)

// flushTick is how long updates are gathered before their views are scored
// and written (at most MaxViewDelay): a session with several records within
// one tick is scored and written once, and a rescoring due in that tick
// shares the pass. It is short (1 ms) so an idle layer still answers a
// POST within milliseconds. (In BenchmarkLatency's stream a session rarely
// has two records within a tick: views per event stay about 1 there; the
// saving is for sessions with bursts of records, and fewer, larger store
// writes when polls are small.)
//
// While the layer is coalesceLag records or more behind (the lag as of
// the last poll) the tick is MaxViewDelay itself: the records waiting are already
// older than that, and a session's records within one tick are then more
// often scored once (in BenchmarkLatency's stream 0.90 distinct sessions per
// record in 2,500 consecutive records, 0.78 in 5,000, against 0.99 in 512),
// so the layer catches up sooner. A view still follows its newest record
// within MaxViewDelay. Only a lag that large switches the tick, not a poll
// that shows the layer behind (pollBehind): switched by those too (a poll
// of behindPoll records, or of smallPoll after behindBusy), the tick
// cost more latency than its views saved — BenchmarkLatency at 50k/s with
// a 100 ms stall every 2 s (load 6–10): views per drained record 1.12–1.17
// → 0.99 but p50 4–6 → 67–335 ms, as each 50 ms window's flush kept the
// loop 20 ms or more between polls, behind again.
func (l *Layer) flushTick() time.Duration {
	if l.m.lagNow.Load() >= coalesceLag {
		return l.cfg.MaxViewDelay
	}
	return min(l.cfg.MaxViewDelay, maxFlushTick)
}

// behind reports whether the layer is behind, for the rescoring budget
// (rescoreBudget): its last poll shows it (pollBehind), or the lag as of
// the last poll is coalesceLag records or more. The lag alone misses most
// backlogs: it is counted after the poll, from the high watermarks its
// fetches carried, and the client fetches what is there, so a layer
// 100–300 ms behind its stream read a lag of 0 after nearly every poll
// (BenchmarkLatency's trace at 50k/s after a 100 ms stall of the loop).
func (l *Layer) behind() bool {
	return l.pollBehind() || l.m.lagNow.Load() >= coalesceLag
}

// pollBehind reports whether the last poll's records show the layer
// behind: behindPoll records or more, or smallPoll or more read after the
// loop spent behindBusy or longer since the poll before (processing,
// flushing, stalled): its records waited that long. The first poll after
// a 100 ms stall at 50k/s often read only a few hundred records (the rest
// came with the next polls) while they were 120 ms old.
func (l *Layer) pollBehind() bool {
	return l.lastPoll >= behindPoll || l.lastPoll >= smallPoll && l.busy >= behindBusy
}

// behindBusy is the loop's time between two polls from which the layer
// counts as behind (pollBehind): what behindPoll records take to arrive
// at 50,000 events/s.
const behindBusy = 20 * time.Millisecond

// behindPoll is the poll size from which the layer counts as behind: 20 ms
// of a 50,000 events/s stream. At 50k/s (BenchmarkLatency, 6 s with a
// 100 ms stall every 2 s, load 7) the median poll read 50 records and 90%
// of them 150 or fewer; polls of 1,000 or more came after the stalls and
// the loop's other slow iterations (GC mark phases, the other core busy).
const behindPoll = 1000

// maxFlushTick bounds flushTick while the layer keeps up.
const maxFlushTick = time.Millisecond

// coalesceLag is the lag, in records, from which flushTick is MaxViewDelay:
// 0.2 s of a 50,000 events/s stream.
const coalesceLag = 10_000

// flushDue reports whether the views pending should be written now: after
// a small poll at once (a layer that keeps up gains nothing by waiting, and
// an idle one answers a POST sooner), else once the flush tick has passed.
func (l *Layer) flushDue(now time.Time) bool {
	return len(l.failed) > 0 || l.proc.pending() && (l.smallPoll || now.Sub(l.proc.pendSince) >= l.flushTick())
}

// flushDueInPoll reports whether the views pending should be written before
// the rest of a long poll is applied: once the oldest is MaxViewDelay old,
// so that a view follows its newest record within MaxViewDelay however long
// the poll. Flushing sooner (each time the flush tick passed and no write
// was in flight) cost more than it gave, measured side by side: views per
// event 0.343 against 0.362–0.367, BenchmarkThroughput's events/s +19% and
// CPU per event −16% (medians of 3) without it, and BenchmarkLatency's
// 50k/s p99 187–618 ms without it against 292–1,011 ms with it.
func (l *Layer) flushDueInPoll() bool {
	return l.proc.pending() && time.Since(l.proc.pendSince) >= l.cfg.MaxViewDelay
}

// smallPoll is the size below which a poll's views are written without
// waiting for the flush tick.
const smallPoll = 64

// pollWait is how long the next poll may wait for records: idleWait, or
// less when views pending are due to be written sooner.
func (l *Layer) pollWait(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.proc.pending() {
		return l.rescoreWait()
	}
	return min(l.rescoreWait(), max(l.proc.pendSince.Add(l.flushTick()).Sub(now), 100*time.Microsecond))
}

// decodeAll decodes l.recs into l.dec, on up to GOMAXPROCS goroutines for
// large polls. Decoding is a third of the per-record work and needs no
// state, unlike what follows.
func (l *Layer) decodeAll() {
	n := len(l.recs)
	l.dec = slices.Grow(l.dec[:0], n)[:n]
	workers := min(runtime.GOMAXPROCS(0), n/256)
	if workers <= 1 {
		for i, r := range l.recs {
			l.dec[i].decode(&l.proc.ev, r.Partition, r.Offset, r.Timestamp, r.Value)
		}
		return
	}
	for len(l.evs) < workers {
		l.evs = append(l.evs, new(schemas.UserInteraction))
	}
	// Blocks of records are claimed one at a time, the processing goroutine
	// among the workers (runPass, as a parallel scoring pass does).
	const block = 128
	recs, dec := l.recs, l.dec
	runPass(l.evs[:workers], (n+block-1)/block, func(ev *schemas.UserInteraction, b int) {
		for i := b * block; i < min((b+1)*block, n); i++ {
			r := recs[i]
			dec[i].decode(ev, r.Partition, r.Offset, r.Timestamp, r.Value)
		}
	})
}

// afterPoll writes the views, switches batch, commits and exports metrics.
func (l *Layer) afterPoll(ctx context.Context, now time.Time) {
	l.awaitWrite(false) //nolint:errcheck // logged; its views are retried
	r0 := l.proc.c.rescored
	l.rescore(now)
	l.step.Rescored += int(l.proc.c.rescored - r0)
	l.yieldToReads()
	l.cmu.Lock()
	hold := l.commitHold
	l.cmu.Unlock()
	commitDue := now.Sub(l.lastCommit) >= l.cfg.CommitInterval && now.After(hold)
	// A commit comes after the views of every record processed are written:
	// a session forgotten before its view was written (expired while covered
	// by the batch) may lie before the horizon, and a restart would not
	// replay it.
	if l.flushDue(now) || commitDue && l.proc.pending() {
		l.flush(ctx, now) //nolint:errcheck // logged and retried
	}
	l.yieldToReads()
	l.publishDeltas(ctx, pubTick)
	if commitDue {
		l.step.Commit = true
		l.commit(ctx, false, nil) //nolint:errcheck // logged and retried
		l.lastCommit = now
	}
	select { // after the commit: a handoff marks every view to be written
	case b := <-l.pending:
		l.switchBatch(b)
	default:
	}
	if exp, ok := l.views.(ViewExpirer); ok && now.Sub(l.lastExpire) >= time.Minute && l.proc.streamTime() > 0 {
		// Record time, like session expiry: a replay of old records does not
		// expire the views it writes.
		l.lastExpire = now
		cutoff := time.UnixMilli(l.proc.streamTime()).Add(-2 * l.cfg.SessionTimeout)
		go func() {
			if _, err := exp.ExpireSessions(ctx, cutoff); err != nil && ctx.Err() == nil {
				l.log.Warn("expire session views", "err", err)
			}
		}()
	}
	l.raiseHighWatermarks()
	l.m.sync(l.proc, now)
	l.notePositions()
	ready := l.joined && l.faults.Len() == 0 && l.deltasReady.Load()
	for _, ps := range l.proc.parts {
		ready = ready && ps.replayed()
	}
	l.ready.Store(ready)
}

// switchBatch serves batch b.
func (l *Layer) switchBatch(b *Batch) {
	if b == nil || b.Model == nil || b.Meta.BatchID == *l.served.Load() {
		return
	}
	d := l.proc.handoff(b)
	l.checkDue.Store(true) // a new boundary (and the log it belongs to) to check
	l.m.handoffDur.Observe(d.Seconds())
	l.m.lastHandoff.Store(time.Now().UnixNano())
	id := b.Meta.BatchID
	l.served.Store(&id)
	l.log.Info("batch handoff", "batch_id", id, "boundary", b.Meta.Boundary, "rebuild", d,
		"delta_pairs", l.proc.deltas.Covisit().Len())
}

// pollBatches asks the source for the latest batch every BatchPollInterval
// and hands new ones to the consuming loop.
func (l *Layer) pollBatches(ctx context.Context) {
	t := time.NewTicker(l.cfg.BatchPollInterval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b, err := l.src.Latest(ctx)
		if err != nil {
			if ctx.Err() == nil && !failing {
				l.log.Warn("batch source unavailable", "err", err)
			}
			failing = true
			continue
		}
		failing = false
		if b == nil || b.Model == nil || b.Meta.BatchID == *l.served.Load() {
			continue
		}
		select { // keep only the newest
		case <-l.pending:
		default:
		}
		l.pending <- b
	}
}

// flush scores the views of the sessions updated since the last flush (and
// those whose write failed before) and starts writing them on a goroutine of
// their own, so the store's round trip overlaps the processing of the next
// records. One write is in flight at a time: flush first waits for the
// previous one (a failed write's views are written again first). A commit
// waits for the write in flight (commit), so it still comes after the views
// of every record it covers are written. The error is that of the previous
// write; flushNow waits for this one.
func (l *Layer) flush(ctx context.Context, now time.Time) error {
	t0 := time.Now()
	werr := l.awaitWrite(true)
	t1 := time.Now()
	l.step.AwaitDur += t1.Sub(t0)
	if !l.proc.pending() && len(l.failed) == 0 {
		return werr
	}
	views := l.proc.appendViews(append(l.buf[:0], l.failed...), now)
	l.step.ScoreDur += time.Since(t1)
	l.step.Flushes++
	l.step.Views += len(views)
	l.failed = l.failed[:0]
	l.writing = views
	if l.writeDone == nil {
		l.writeDone = make(chan writeResult, 1)
	}
	go func() {
		err := l.views.UpsertSessions(ctx, views)
		l.writeDone <- writeResult{err: err, took: time.Since(now)}
	}()
	return werr
}

// writeResult is how a view write ended: its error and the time from the
// start of the flush (scoring included) to its end.
type writeResult struct {
	err  error
	took time.Duration
}

// flushNow flushes and waits for the write: its error covers every view
// (those of a previous failed write are in it).
func (l *Layer) flushNow(ctx context.Context, now time.Time) error {
	l.flush(ctx, now) //nolint:errcheck // a failed previous write's views are written again here
	return l.awaitWrite(true)
}

// awaitWrite collects the result of the view write in flight, if any,
// waiting for it when block (else only when it is done). After a failure
// its views are kept in l.failed, written again first by the next flush,
// and no commit happens before they are.
func (l *Layer) awaitWrite(block bool) error {
	if l.writing == nil {
		return nil
	}
	var res writeResult
	if block {
		select {
		case res = <-l.writeDone:
		default: // reads are served while the store answers
			l.readsDuring(func() { res = <-l.writeDone })
		}
	} else {
		select {
		case res = <-l.writeDone:
		default:
			return nil
		}
	}
	views, err := l.writing, res.err
	l.writing = nil
	l.m.flushDur.Observe(res.took.Seconds())
	if err != nil {
		l.m.viewErrors.Inc()
		l.log.Warn("write session views", "views", len(views), "err", err)
		l.failed = append(l.failed[:0], views...)
		clear(views)
		l.buf = views[:0]
		l.proc.itemArenas((*itemArena).drop) // l.failed holds their items
		return fmt.Errorf("write %d session views: %w", len(views), err)
	}
	l.m.viewWrites.Add(float64(len(views)))
	clear(views)
	l.buf = views[:0]
	if len(l.failed) == 0 {
		// Every view scored since the last reuse is written: nothing else
		// holds their items (the next flush scores only after this).
		l.proc.itemArenas((*itemArena).reuse)
	}
	return nil
}

// commitPoint is what a commit records of a partition: the replay horizon
// (the offset), the position up to which views were written and the shed
// stamp (its metadata, viewsMeta and shedMeta: a partition whose horizon did
// not move is committed again when the stamp changed, so that the group's
// commits tell serve of sessions shed after the last record's commit).
type commitPoint struct {
	horizon, views int64
	shed           string
}

// commit commits the replay horizon of the owned partitions (only those in
// ids when not nil) that changed, each with the position up to which its
// views are written (viewsfrom.go). It holds back while views are unwritten;
// the callers flush first.
func (l *Layer) commit(ctx context.Context, sync bool, ids []int32) error {
	if l.cl == nil {
		return nil
	}
	if err := l.awaitWrite(true); err != nil || len(l.failed) > 0 {
		return errors.New("commit held back: session views unwritten")
	}
	if ids == nil {
		for id := range l.proc.parts {
			ids = append(ids, id)
		}
	}
	offsets := map[int32]kgo.EpochOffset{}
	points := map[int32]commitPoint{}
	shed := l.shedStamp(time.Now())
	l.cmu.Lock()
	for _, id := range ids {
		h, ok := l.proc.horizon(id)
		if !ok {
			continue
		}
		cp := commitPoint{horizon: h, views: l.proc.parts[id].viewsWritten(), shed: shed}
		if c, ok := l.committed[id]; ok && c == cp {
			continue
		}
		offsets[id] = kgo.EpochOffset{Epoch: -1, Offset: h}
		points[id] = cp
	}
	l.cmu.Unlock()
	if len(offsets) == 0 {
		return nil
	}
	req := map[string]map[int32]kgo.EpochOffset{l.cfg.Topic: offsets}
	ctx = kgo.PreCommitFnContext(ctx, func(r *kmsg.OffsetCommitRequest) error {
		for i := range r.Topics {
			if r.Topics[i].Topic != l.cfg.Topic {
				continue
			}
			for j := range r.Topics[i].Partitions {
				rp := &r.Topics[i].Partitions[j]
				if cp, ok := points[rp.Partition]; ok && cp.horizon == rp.Offset {
					rp.Metadata = kmsg.StringPtr(viewsMeta(cp.views) + cp.shed)
				}
			}
		}
		return nil
	})
	var cerr error
	done := func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err == nil {
			err = commitErr(resp)
		}
		if err != nil {
			l.m.commitErrors.Inc()
			l.cmu.Lock()
			d := l.commitBo.NextBackOff()
			l.commitHold = time.Now().Add(d)
			l.cmu.Unlock()
			l.log.Warn("commit replay horizons", "err", err, "retry_in", d)
			cerr = err
			return
		}
		l.cmu.Lock()
		l.commitBo.Reset()
		l.commitHold = time.Time{}
		maps.Copy(l.committed, points)
		l.cmu.Unlock()
	}
	if sync {
		l.cl.CommitOffsetsSync(ctx, req, done)
		return cerr
	}
	l.cl.CommitOffsets(ctx, req, done)
	return nil
}

// assigned starts the partitions given to this member; their records are
// replayed from the committed horizons.
func (l *Layer) assigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	ids := assigned[l.cfg.Topic]
	from, target, views, parts := l.replayRange(ctx, cl, ids)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.joined = true
	if parts > 0 {
		l.eventParts = parts
	}
	if len(ids) == 0 {
		return
	}
	for _, id := range ids {
		l.proc.assign(id)
		ps := l.proc.parts[id]
		ps.from, ps.target = from[id], target[id]
		ps.hw = target[id]
		if views[id] > from[id] && from[id] >= 0 {
			l.proc.muteUntil(id, views[id])
		}
	}
	l.notePositions()
	l.ready.Store(false)
	l.checkDue.Store(true)
	l.log.Info("partitions assigned", "partitions", ids, "replay_from", from, "replay_to", target, "views_written_to", views)
}

// replayRange returns, for partitions ids, the offset consumption starts at
// (the committed horizon, or the log start) and the end offset now: the
// replay that rebuilds their state. Fetches report high watermarks only for
// partitions with records, so without this an empty partition, or one with
// nothing to replay, would never count as replayed. views is the position
// up to which the previous owner wrote views, from the commit's metadata.
// Unknown values are -1. parts is the partition count of the topic (0
// unknown).
func (l *Layer) replayRange(ctx context.Context, cl *kgo.Client, ids []int32) (from, target, views map[int32]int64, parts int32) {
	from, target, views = map[int32]int64{}, map[int32]int64{}, map[int32]int64{}
	for _, id := range ids {
		from[id], target[id], views[id] = -1, -1, -1
	}
	if len(ids) == 0 {
		return from, target, views, 0
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, l.cfg.Topic)
	if err != nil {
		l.log.Warn("list end offsets of assigned partitions", "err", err)
		return from, target, views, 0
	}
	parts = int32(len(ends[l.cfg.Topic]))
	starts, serr := adm.ListStartOffsets(ctx, l.cfg.Topic)
	committed, cerr := adm.FetchOffsets(ctx, l.cfg.Group)
	for _, id := range ids {
		if o, ok := ends.Lookup(l.cfg.Topic, id); ok && o.Err == nil {
			target[id] = o.Offset
		}
		if c, ok := committed.Lookup(l.cfg.Topic, id); cerr == nil && ok && c.Err == nil && c.At >= 0 {
			from[id] = c.At
			views[id] = parseViewsMeta(c.Metadata)
		} else if s, ok := starts.Lookup(l.cfg.Topic, id); serr == nil && ok && s.Err == nil {
			from[id] = s.Offset
		}
	}
	return from, target, views, parts
}

// revoked hands partitions over: their views and dead letters are written,
// their horizons committed, their state dropped.
func (l *Layer) revoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	ids := revoked[l.cfg.Topic]
	if len(ids) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closing {
		// The next owner replays these partitions from their horizons; until
		// it has passed where this member stopped, the other members keep
		// scoring from what this member published last.
		l.publishDeltas(ctx, pubRevoke)
		if err := l.cl.Flush(ctx); err != nil {
			l.log.Warn("publish shared deltas before a revocation", "err", err)
		}
		l.proc.rescoreRevoked(ids) // the others are marked by the drop
		if err := l.flushNow(ctx, time.Now()); err == nil {
			l.commit(ctx, true, ids) //nolint:errcheck // logged; the next owner replays from the last commit
		}
	}
	l.dropPartitions(ids)
	l.log.Info("partitions revoked", "partitions", ids)
}

// lost drops partitions this member no longer owns, without committing.
func (l *Layer) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	ids := lost[l.cfg.Topic]
	if len(ids) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropPartitions(ids)
	l.log.Warn("partitions lost", "partitions", ids)
}

func (l *Layer) dropPartitions(ids []int32) {
	l.noteSeen()
	l.proc.drop(ids)
	l.notePositions()
	l.cmu.Lock()
	for _, id := range ids {
		delete(l.committed, id)
		l.m.forgetPartition(id)
	}
	l.cmu.Unlock()
	for _, id := range ids {
		l.faults.Forget(id) // the next owner checks it
	}
}

// Ready reports whether the layer joined its group and consumed every owned
// partition up to the end offset it had when assigned (the replay that
// rebuilds its state).
func (l *Layer) Ready() bool { return l.ready.Load() }

// BatchID returns the id of the batch served, "" when none.
func (l *Layer) BatchID() string { return *l.served.Load() }

// Positions returns the next offset to process of each owned partition that
// has processed a record, as of the last poll processed. It never waits for
// the poll being processed: behind a backlog a poll takes seconds, and
// /v1/status and /metrics ask for the positions.
func (l *Layer) Positions() map[int32]int64 {
	if p := l.positions.Load(); p != nil {
		return maps.Clone(p.next)
	}
	return map[int32]int64{}
}

// positions are the owned partitions' positions as of the last poll: next
// holds those that processed a record, from every owned partition's next
// offset to process (its position, else where its consumption starts; -1
// unknown).
type positions struct{ next, from map[int32]int64 }

// notePositions publishes the positions for Positions and watchEnds.
// Called with l.mu held.
func (l *Layer) notePositions() {
	p := &positions{next: make(map[int32]int64, len(l.proc.parts)), from: make(map[int32]int64, len(l.proc.parts))}
	for id, ps := range l.proc.parts {
		p.from[id] = ps.from
		if ps.next >= 0 {
			p.next[id] = ps.next
			p.from[id] = ps.next
		}
	}
	l.positions.Store(p)
}

// Assigned returns the owned partitions of the events topic, ascending.
func (l *Layer) Assigned() []int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]int32, 0, len(l.proc.parts))
	for id := range l.proc.parts {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Recommend returns session id's recommendations scored now from the batch
// and the deltas (what its view would say), and false when the session is
// not live here.
func (l *Layer) Recommend(id string, k int) ([]model.Scored, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.proc.recommend(id, k)
}

// LiveSessions returns the ids of the live sessions.
func (l *Layer) LiveSessions() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, ps := range l.proc.parts {
		for s := ps.live.head; s != nil; s = s.next {
			out = append(out, s.ms.ID())
		}
	}
	return out
}

// Deltas returns a copy of the deltas: the model contributions of the
// records past the served batch's boundary in the owned partitions.
func (l *Layer) Deltas() (*model.Model, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.proc.copyDeltas()
}

// commitErr returns the first partition error of a commit response.
func commitErr(resp *kmsg.OffsetCommitResponse) error {
	if resp == nil {
		return nil
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("partition %d: %w", p.Partition, err)
			}
		}
	}
	return nil
}
