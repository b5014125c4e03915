// Package archive owns `lambdarec archive`: the batch side's exactly-once
// copy of the Kafka topic `events` into the Iceberg table `events`, the
// master dataset every batch run reads.
//
// It consumes every partition of the topic directly (no group assignment) in
// micro-batches closed by size or time; a batch is written as Parquet and
// committed in the background while the next one is collected and decoded
// (pipeline.go), and the next one is written and committed only once that
// commit has succeeded. Each record is decoded (by
// schemas/wire, else schemas.Decode) and validated;
// the ones that fail go to the dead-letter topic with the reason and their
// source position, and are acknowledged by Kafka before the batch commits.
// The archiver is the one stage that dead-letters records of the topic (the
// speed layer only counts them), and it does so once per source position:
// each snapshot also records, in lakehouse.DLQNextProperty, where in the
// dead-letter topic the letters of records not yet committed can start, and
// a restarted archiver reads them back from there and does not send them
// again.
// The valid ones are written as Parquet data files (partitioned by day of
// event time) and committed in one Iceberg snapshot whose summary carries,
// in lakehouse.OffsetsProperty, the highest offset of every partition the
// table holds so far. That snapshot is the only source of truth: on start the
// archiver reads the offsets back and resumes at the next record, so a crash
// at any point neither loses nor repeats a record in the table. The consumer
// group's committed offsets are written after each commit only so that lag
// shows up in the usual Kafka tools.
//
// The per-partition offsets of a snapshot are the batch layer's boundary:
// see lakehouse.Boundary.
//
// # Offsets belong to one log
//
// Offsets mean something only within one log. Each snapshot records, in
// lakehouse.TopicIDsProperty, the Kafka topic ID the offsets were read from,
// and the archiver checks the broker's log against what the table holds —
// at start, on every fetch error, when a record below the held offset
// arrives, when a fetch carries another topic ID, and every 30 seconds. A
// partition whose log no longer continues the table (the topic was deleted
// and recreated, the broker lost its data so the log ends at or before the
// held offset, or the log starts past it: records deleted before they were
// archived) is stopped, never skipped over: the archiver stops fetching it,
// drops what it had fetched of it, reports it (Faults, Ready false, the
// gauge lambdarec_archive_partition_faults, one ERROR line per partition a
// minute at most, and /v1/status of serve through
// serving/layerstatus.OffsetFaults) and keeps archiving the other
// partitions. If the old log comes back (a broker restored from its data),
// the partition resumes where the table ends.
//
// Why stop rather than start a new epoch: the table's offsets are the batch
// boundary that batch_runs, the serving store and the speed layer compare
// Kafka offsets with. Archiving a new log whose offsets start again at 0
// would need every one of them to tell the two logs apart (an epoch in each
// boundary, and the speed layer learning the epoch before counting a
// record); without that, a new log's records would compare as already
// covered and vanish from the speed layer, the silent loss this prevents.
// Stopping is exact and loud; the operator restores the log, or starts the
// table anew (a new iceberg.namespace) to archive the new log from its
// start.
//
// Every fetch or flush error backs off (exponential with jitter, capped at
// 10 s; kafka.NewBackoff), and warnings are limited to one line a second per
// message (obs.RateLimit).
package archive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/obs"
	"github.com/lambdarec/lambdarec/schemas"
	"github.com/lambdarec/lambdarec/schemas/wire"
)

// Stage is the lambdarec.stage header of the records the archiver
// dead-letters.
const Stage = "archive"

// ErrFenced is returned by Run when the table holds offsets of a partition
// that this archiver did not write: another archiver is writing the same
// topic. Nothing was committed; restarting resumes from the table.
var ErrFenced = errors.New("another writer advanced the archived offsets")

// shutdownFlush bounds the flush of the last micro-batch after Run's context
// has ended.
const shutdownFlush = 30 * time.Second

// Deps are what an Archiver needs besides its configuration.
type Deps struct {
	// Log receives progress. Default: discard.
	Log *slog.Logger
	// Registerer receives the metrics. Default: a private registry.
	Registerer prometheus.Registerer
	// Lake is the open lakehouse; when nil, Run opens (and closes) the one
	// cfg.Iceberg names.
	Lake *lakehouse.Lakehouse
	// Now, when set, is the clock events are validated against. Default: each
	// record's timestamp (kafka.RecordClock), as the speed layer does.
	Now func() time.Time
	// Yield, when set, is called before each micro-batch is collected; it
	// may block, for a bounded time, to leave the CPU to more urgent work
	// of the same process (dev: the speed layer). Nothing is skipped: the
	// archive's lag grows meanwhile and shows as usual.
	Yield func(ctx context.Context)
}

// Archiver copies the events topic into the events table.
type Archiver struct {
	cfg     config.Config
	log     *slog.Logger
	lake    *lakehouse.Lakehouse
	ownLake bool
	now     func() time.Time
	yield   func(ctx context.Context)
	m       *metrics

	// State of a run.
	cl *kgo.Client
	// tbl is the table as loaded by start: its identifier, and the schema,
	// partition spec, location and write properties the data files are
	// written with (encodeBatch). Each commit loads the table afresh and
	// drops the table it returns: a committed table of iceberg-go keeps
	// what it was built from, so holding it across commits grew the heap by
	// the whole snapshot history at every commit (see commit).
	tbl      *table.Table
	sc       *arrow.Schema
	workers  []*worker
	offsets  lakehouse.Offsets // what the table holds, as of our last commit
	hwm      map[int32]int64   // high watermarks last seen, for lag
	consumed []int32           // partitions consumed

	// The log the offsets belong to, and its checks.
	topicID     string      // topic ID of the log the table's offsets were read from
	admCl       *kgo.Client // checks the log: a client of its own, whose metadata no consumer cursor holds
	faults      *kafka.Faults
	bo          *backoff.ExponentialBackOff
	lastCheck   time.Time
	lastRefresh time.Time
	started     bool
	failing     bool                  // the last flush failed; it is being retried
	flushErr    atomic.Pointer[error] // the failing flush's error, nil when not failing
	ready       atomic.Bool

	// Dead letters: the DLQ end as far as this archiver knows it, and the
	// records already dead-lettered that the table does not hold yet, with
	// where their letter is.
	dlqNext lakehouse.Offsets
	dlqDone map[schemas.Position]schemas.Position

	// The pipeline (pipeline.go): the batch whose commit runs in the
	// background, and an error met while settling it inside a poll.
	pending *microBatch
	fatal   error
	// carry are records polled past the last micro-batch, the start of the
	// next one (collect).
	carry []*kgo.Record
}

// New returns an archiver for cfg (sections kafka, iceberg and archive).
func New(cfg config.Config, deps Deps) (*Archiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	a := &Archiver{cfg: cfg, log: deps.Log, lake: deps.Lake, now: deps.Now, yield: deps.Yield, bo: kafka.NewBackoff()}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	faultLog := a.log // fault reports have their own limit: one per partition a minute
	a.log = obs.RateLimit(a.log, slog.LevelWarn, time.Second)
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("archive metrics: %w", err)
	}
	a.m = m
	a.faults = kafka.NewFaults(Stage, faultLog, m.faults)
	return a, nil
}

// testHook, when set (by this package's tests only), is called at the
// points of a flush where a crash is most interesting.
var testHook func(phase string)

func hook(phase string) {
	if testHook != nil {
		testHook(phase)
	}
}

// testFail, when set (by this package's tests only), makes a commit fail
// with the error it returns for phase "commit" (after the dead letters were
// acknowledged, before the Iceberg commit), and the writing of a batch's
// files for phase "write" (before any is written).
var testFail func(phase string) error

// Run archives until ctx ends, then flushes the pending micro-batch and
// returns nil. Any error it returns leaves the table consistent; running
// again resumes where the table ends.
func (a *Archiver) Run(ctx context.Context) (err error) {
	if a.lake == nil {
		lake, err := lakehouse.Open(ctx, a.cfg.Iceberg, a.log)
		if err != nil {
			return err
		}
		a.lake, a.ownLake = lake, true
		defer func() {
			err = errors.Join(err, lake.Close())
			a.lake, a.ownLake = nil, false
		}()
	}
	if err := a.start(ctx); err != nil {
		return err
	}
	// Commits run in the background (pipeline.go) with a context of their
	// own: the end of ctx lets the one in flight finish, for shutdownFlush
	// at most.
	cctx, cancelCommits := context.WithCancel(context.WithoutCancel(ctx))
	stopTimer := context.AfterFunc(ctx, func() { time.AfterFunc(shutdownFlush, cancelCommits) })
	defer func() {
		a.drain()
		stopTimer()
		cancelCommits()
		a.cl.Close()
		a.admCl.Close()
		for _, w := range a.workers {
			w.b.Release()
		}
		a.started = false
		a.setReady()
	}()
	topic := a.cfg.Kafka.Topic
	a.log.Info("archive started", "topic", topic, "table", strings.Join(a.tbl.Identifier(), "."),
		"resume_from", a.offsets.Topic(topic), "max_records", a.cfg.Archive.MaxRecords, "max_interval", a.cfg.Archive.MaxInterval)
	for {
		if a.yield != nil {
			a.yield(ctx)
		}
		recs, err := a.collect(ctx)
		if err != nil {
			return err
		}
		fctx, cancel := flushContext(ctx)
		if len(recs) > 0 {
			err = a.flushAsync(ctx, fctx, cctx, recs)
		}
		if err == nil && ctx.Err() != nil {
			err = a.settle(ctx, fctx)
			if err == nil {
				a.log.Info("archive stopped", "offsets", a.offsets.Topic(topic))
			}
			cancel()
			return err
		}
		cancel()
		if err != nil {
			return err
		}
	}
}

// FlushError is the error of the last flush while flushes keep failing and
// are retried with backoff (a broken disk, an unreachable catalog); nil once
// one succeeds. Meanwhile nothing is archived and Ready is false.
func (a *Archiver) FlushError() error {
	if p := a.flushErr.Load(); p != nil {
		return *p
	}
	return nil
}

// flushRetrying flushes recs, retrying with backoff while the flush fails
// for a reason a retry can cure (not a fenced table, not the end of ctx).
// Meanwhile the archiver is not ready. failed is the error of a first
// attempt that already failed (the commit of a pipelined batch), or nil.
// Nothing may be pending.
func (a *Archiver) flushRetrying(ctx, fctx context.Context, recs []*kgo.Record, failed error) error {
	bo := kafka.NewBackoff()
	for {
		err := failed
		if failed == nil {
			err = a.flush(fctx, recs)
		}
		failed = nil
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrFenced) || ctx.Err() != nil || fctx.Err() != nil {
			return err
		}
		a.failing = true
		a.flushErr.Store(&err)
		a.setReady()
		a.m.flushErrors.Inc()
		d := bo.NextBackOff()
		a.log.Error("archive flush failed; retrying", "err", err, "retry_in", d)
		if !kafka.Sleep(ctx, d) {
			return err
		}
	}
}

// start loads the table and its offsets and starts consuming after them.
func (a *Archiver) start(ctx context.Context) error {
	tbl, err := a.lake.EnsureEvents(ctx)
	if err != nil {
		return err
	}
	sc, err := lakehouse.ArrowSchema(tbl)
	if err != nil {
		return err
	}
	offsets, err := lakehouse.SnapshotOffsets(tbl.Metadata(), tbl.CurrentSnapshot())
	if err != nil {
		return fmt.Errorf("archive: offsets of %s: %w", strings.Join(tbl.Identifier(), "."), err)
	}
	ids, err := lakehouse.SnapshotTopicIDs(tbl.Metadata(), tbl.CurrentSnapshot())
	if err != nil {
		return fmt.Errorf("archive: topic ids of %s: %w", strings.Join(tbl.Identifier(), "."), err)
	}
	dlqNext, dlqKnown, err := lakehouse.SnapshotDLQNext(tbl.Metadata(), tbl.CurrentSnapshot())
	if err != nil {
		return fmt.Errorf("archive: %s: %w", strings.Join(tbl.Identifier(), "."), err)
	}
	workers, err := newWorkers(sc)
	if err != nil {
		return fmt.Errorf("archive: table %s: %w", strings.Join(tbl.Identifier(), "."), err)
	}
	a.tbl, a.sc, a.workers, a.offsets, a.hwm = tbl, sc, workers, offsets, map[int32]int64{}
	a.pending, a.fatal, a.carry = nil, nil, nil
	releaseWorkers := func() {
		for _, w := range workers {
			w.b.Release()
		}
	}

	k := a.cfg.Kafka
	admin, err := kafka.Connect(k.Brokers, kafka.SecurityOf(k))
	if err != nil {
		releaseWorkers()
		return err
	}
	defer admin.Close()
	if err := kafka.EnsureTopics(ctx, admin, int32(k.Partitions), k.Topic, k.DLQTopic); err != nil {
		releaseWorkers()
		return kafka.Explain(err, kafka.SecurityOf(k))
	}
	parts, err := a.partitions(ctx, admin)
	if err != nil {
		releaseWorkers()
		return err
	}
	a.consumed = parts
	// The log must continue what the table holds; a table without a topic
	// ID (written before they were recorded, or empty) adopts the log's.
	v, err := kafka.DescribeLog(ctx, kadm.NewClient(admin), k.Topic)
	if err != nil {
		releaseWorkers()
		return fmt.Errorf("archive: %w", err)
	}
	a.topicID = ids[k.Topic]
	if a.topicID == "" {
		a.topicID = v.TopicID
	}
	if err := a.scanDLQ(ctx, admin, dlqNext, dlqKnown); err != nil {
		releaseWorkers()
		return err
	}
	a.cl, err = kafka.Connect(k.Brokers, kafka.SecurityOf(k), append([]kgo.Opt{
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{k.Topic: a.startOffsets(parts)}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ProduceRequestTimeout(k.ProduceTimeout),
		// Out of range is an error to look into (the log lost records),
		// never a reason to jump elsewhere in it.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
	}, kafka.FetchOpts(k)...)...)
	if err != nil {
		releaseWorkers()
		return err
	}
	if a.admCl, err = kafka.Connect(k.Brokers, kafka.SecurityOf(k)); err != nil {
		a.cl.Close()
		releaseWorkers()
		return err
	}
	a.started = true
	a.lastRefresh = time.Now()
	a.applyCheck(v)
	return nil
}

// partitions lists the partitions of the events topic.
func (a *Archiver) partitions(ctx context.Context, cl *kgo.Client) ([]int32, error) {
	topics, err := kadm.NewClient(cl).ListTopics(ctx, a.cfg.Kafka.Topic)
	if err != nil {
		return nil, fmt.Errorf("archive: list topic %s: %w", a.cfg.Kafka.Topic, err)
	}
	td, ok := topics[a.cfg.Kafka.Topic]
	if !ok || td.Err != nil {
		return nil, fmt.Errorf("archive: topic %s: %v", a.cfg.Kafka.Topic, td.Err)
	}
	return td.Partitions.Numbers(), nil
}

// startOffsets returns where to consume each of parts from: right after the
// offset the table holds, or the start of the log.
func (a *Archiver) startOffsets(parts []int32) map[int32]kgo.Offset {
	held := a.offsets.Topic(a.cfg.Kafka.Topic)
	out := make(map[int32]kgo.Offset, len(parts))
	for _, p := range parts {
		if off, ok := held[p]; ok {
			out[p] = kgo.NewOffset().At(off + 1)
		} else {
			out[p] = kgo.NewOffset().AtStart()
		}
	}
	return out
}

// addNewPartitions starts consuming partitions added to the topic since
// start.
func (a *Archiver) addNewPartitions(ctx context.Context) error {
	parts, err := a.partitions(ctx, a.cl)
	if err != nil {
		return err
	}
	var added []int32
	for _, p := range parts {
		if !slices.Contains(a.consumed, p) {
			added = append(added, p)
		}
	}
	if len(added) == 0 {
		return nil
	}
	a.settleInline(ctx) // start offsets come from what the table holds
	a.consumed = append(a.consumed, added...)
	a.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{a.cfg.Kafka.Topic: a.startOffsets(added)})
	a.log.Info("archive consumes new partitions", "partitions", added)
	return nil
}

// collect polls one micro-batch: until MaxRecords records, MaxInterval after
// the first record, or the end of ctx.
//
// Each poll takes every record the client holds, not only what the batch
// still lacks, and the records past the batch wait in a.carry for the next
// one: the client fetches again only once everything it fetched was taken,
// so taking it all at once lets the next fetch run while this batch is
// encoded, instead of in the next collect, with both cores waiting for it.
func (a *Archiver) collect(ctx context.Context) ([]*kgo.Record, error) {
	max := a.cfg.Archive.MaxRecords
	recs := a.carry
	a.carry = nil
	if len(recs) > max {
		recs, a.carry = recs[:max:max], recs[max:]
	}
	var deadline time.Time
	if len(recs) > 0 {
		deadline = time.Now().Add(a.cfg.Archive.MaxInterval)
	}
	topic := a.cfg.Kafka.Topic
	for len(recs) < max && ctx.Err() == nil {
		a.periodic(ctx)
		if a.fatal != nil {
			return nil, a.fatal
		}
		wait := time.Now().Add(pollWait)
		if !deadline.IsZero() {
			if time.Until(deadline) <= 0 {
				break
			}
			if deadline.Before(wait) {
				wait = deadline
			}
		}
		pctx, cancel := context.WithDeadline(ctx, wait)
		fetches := a.cl.PollRecords(pctx, 0) // all it holds
		cancel()
		if fetches.IsClientClosed() {
			return nil, errors.New("archive: kafka client closed")
		}
		failed := false
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, context.DeadlineExceeded) {
				continue
			}
			failed = true
			a.m.fetchErrors.Inc()
			a.log.Warn("archive fetch", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
			if fe.Topic == topic {
				a.fetchFailed(ctx, fe.Partition, fe.Err)
			}
		}
		if a.fatal != nil {
			return nil, a.fatal
		}
		before := len(recs)
		held := a.expected()
		for _, ft := range fetches {
			for _, t := range ft.Topics {
				if t.Topic != topic {
					continue
				}
				if id := kafka.TopicIDString(t.TopicID); id != "" && a.topicID != "" && id != a.topicID {
					// Read from another log than the table's: look, never keep.
					failed = true
					a.checkLog(ctx)
					continue
				}
				for _, p := range t.Partitions {
					if p.Err == nil && p.HighWatermark >= 0 {
						a.hwm[p.Partition] = p.HighWatermark
					}
					if a.faults.Has(p.Partition) {
						continue
					}
					for _, r := range p.Records {
						if off, ok := held[r.Partition]; ok && r.Offset <= off {
							// Below what the table holds: the log moved
							// under us. Check it before anything else.
							a.checkLog(ctx)
						}
						recs = append(recs, r)
					}
				}
			}
		}
		if before == 0 && len(recs) > 0 {
			deadline = time.Now().Add(a.cfg.Archive.MaxInterval)
		}
		a.updateLag()
		if failed {
			if !kafka.Sleep(ctx, a.bo.NextBackOff()) {
				break
			}
		} else {
			a.bo.Reset()
		}
	}
	if len(recs) > max {
		a.carry = append(a.carry, recs[max:]...)
		recs = recs[:max:max]
	}
	return recs, nil
}

// worker decodes a share of a micro-batch into its own builder: the shares
// are decoded and validated in parallel, and each is written as data files
// of its own (write).
type worker struct {
	b   *wire.Builder
	e   wire.Event              // a record read by the fast decoder
	ev  schemas.UserInteraction // one it left to schemas.Decode
	dlq []*kgo.Record
	rec arrow.RecordBatch
}

// minShare is the fewest records worth a goroutine of their own.
const minShare = 4096

func newWorkers(sc *arrow.Schema) ([]*worker, error) {
	n := max(1, min(runtime.GOMAXPROCS(0), 8))
	ws := make([]*worker, 0, n)
	for range n {
		b, err := wire.NewBuilder(memory.DefaultAllocator, sc)
		if err != nil {
			for _, w := range ws {
				w.b.Release()
			}
			return nil, err
		}
		w := &worker{b: b}
		w.e.KeepEntries() // Builder.Append then writes the maps as Decode read them
		ws = append(ws, w)
	}
	return ws, nil
}

// clock is the clock r's event is validated against: Deps.Now when set, else
// the record's timestamp, as in the speed layer (kafka.RecordClock).
func (a *Archiver) clock(r *kgo.Record) time.Time {
	if a.now != nil {
		return a.now()
	}
	return kafka.RecordClock(r.Timestamp)
}

// encode decodes and validates recs in parallel shares, returning the valid
// ones as one record batch per share (nil when a share has none), their
// rows and the dead letters of the others (in order). Decoding is half of
// the archive's CPU; the shares run on every core at once.
func (a *Archiver) encode(recs []*kgo.Record) (parts []arrow.RecordBatch, rows int, dlq []*kgo.Record) {
	n := min(len(a.workers), max(1, len(recs)/minShare))
	share := (len(recs) + n - 1) / n
	var wg sync.WaitGroup
	for i, w := range a.workers[:n] {
		part := recs[i*share : min((i+1)*share, len(recs))]
		wg.Go(func() {
			w.dlq = w.dlq[:0]
			for _, r := range part {
				clock := a.clock(r)
				if wire.Decode(r.Value, clock, &w.e) {
					w.b.Append(&w.e, r.Partition, r.Offset)
					continue
				}
				if err := schemas.Decode(r.Value, &w.ev, clock); err != nil {
					w.dlq = append(w.dlq, kafka.DeadLetter(a.cfg.Kafka.DLQTopic, r, Stage, err))
					continue
				}
				w.b.AppendEvent(&w.ev, r.Partition, r.Offset)
			}
			w.rec = w.b.NewRecordBatch()
		})
	}
	wg.Wait()
	for _, w := range a.workers[:n] {
		dlq = append(dlq, w.dlq...)
		clear(w.dlq)
		if r := w.rec; r.NumRows() > 0 {
			parts = append(parts, r)
			rows += int(r.NumRows())
		} else {
			r.Release()
		}
		w.rec = nil
	}
	return parts, rows, dlq
}

// write writes each of parts as Parquet data files of tbl (uncommitted; see
// lakehouse.WriteEventFiles), all at once, and releases them. The Parquet
// encoding is the other half of the archive's CPU: it runs beside the
// decoding of the next batch (pipeline.go).
func (a *Archiver) write(ctx context.Context, tbl *table.Table, parts []arrow.RecordBatch) ([]iceberg.DataFile, error) {
	files := make([][]iceberg.DataFile, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, rec := range parts {
		wg.Go(func() { files[i], errs[i] = lakehouse.WriteEventFiles(ctx, tbl, a.sc, rec) }) // releases rec
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return slices.Concat(files...), nil
}

func fmtOffset(off int64, ok bool) string {
	if !ok {
		return "none"
	}
	return fmt.Sprint(off)
}

// commitGroup records the archived position in the consumer group, for lag
// monitoring only. Failures are logged, never fatal: the table is the truth.
// Every partition the archive holds a position of is committed each time (not
// only those of this batch), and a failed commit is tried again within its 5 s
// timeout (a fresh broker answers the first group commits with retriable
// coordinator errors while it creates __consumer_offsets), so a lost commit
// does not leave a partition's group offset behind until its next record.
func (a *Archiver) commitGroup(ctx context.Context, offsets lakehouse.Offsets) {
	if a.cfg.Archive.Group == "" {
		return
	}
	var offs kadm.Offsets
	held := offsets[a.cfg.Kafka.Topic]
	for p, off := range held {
		offs.AddOffset(a.cfg.Kafka.Topic, p, off+1, -1)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var err error
	for attempt := 1; ; attempt++ {
		var resp kadm.OffsetResponses
		resp, err = kadm.NewClient(a.cl).CommitOffsets(cctx, a.cfg.Archive.Group, offs)
		if err == nil {
			err = resp.Error()
		}
		if err == nil || cctx.Err() != nil {
			break
		}
		select {
		case <-cctx.Done():
		case <-time.After(min(time.Duration(1<<min(attempt-1, 4))*100*time.Millisecond, time.Second)):
		}
	}
	if err != nil {
		a.log.Debug("archive group offsets not committed", "group", a.cfg.Archive.Group, "err", err)
	}
}

// updateLag sets the lag gauges: records in Kafka not yet in the table.
func (a *Archiver) updateLag() {
	held := a.offsets.Topic(a.cfg.Kafka.Topic)
	for _, p := range slices.Sorted(maps.Keys(a.hwm)) {
		next := int64(0)
		if off, ok := held[p]; ok {
			next = off + 1
		}
		a.m.lag.WithLabelValues(strconv.Itoa(int(p))).Set(float64(max(a.hwm[p]-next, 0)))
	}
}
