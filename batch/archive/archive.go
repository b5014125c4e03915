// Package archive owns `lambdarec archive`: the batch side's exactly-once
// copy of the Kafka topic `events` into the Iceberg table `events`, the
// master dataset every batch run reads.
//
// It consumes every partition of the topic directly (no group assignment) in
// micro-batches closed by size or time. Each record is decoded and validated;
// the ones that fail go to the dead-letter topic with the reason and their
// source position, and are acknowledged by Kafka before the batch commits.
// The valid ones are written as Parquet data files (partitioned by day of
// event time) and committed in one Iceberg snapshot whose summary carries,
// in lakehouse.OffsetsProperty, the highest offset of every partition the
// table holds so far. That snapshot is the only source of truth: on start the
// archiver reads the offsets back and resumes at the next record, so a crash
// at any point neither loses nor repeats a record in the table. (A record
// dead-lettered just before a crash may be dead-lettered again: the DLQ is
// at-least-once, identified by its source position headers.) The consumer
// group's committed offsets are written after each commit only so that lag
// shows up in the usual Kafka tools.
//
// The per-partition offsets of a snapshot are the batch layer's boundary:
// see lakehouse.Boundary.
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
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/schemas"
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
}

// Archiver copies the events topic into the events table.
type Archiver struct {
	cfg     config.Config
	log     *slog.Logger
	lake    *lakehouse.Lakehouse
	ownLake bool
	now     func() time.Time
	m       *metrics

	// State of a run.
	cl       *kgo.Client
	tbl      *table.Table
	sc       *arrow.Schema
	workers  []*worker
	offsets  lakehouse.Offsets // what the table holds, as of our last commit
	hwm      map[int32]int64   // high watermarks last seen, for lag
	consumed []int32           // partitions consumed
}

// New returns an archiver for cfg (sections kafka, iceberg and archive).
func New(cfg config.Config, deps Deps) (*Archiver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	a := &Archiver{cfg: cfg, log: deps.Log, lake: deps.Lake, now: deps.Now}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("archive metrics: %w", err)
	}
	a.m = m
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
	defer func() {
		a.cl.Close()
		for _, w := range a.workers {
			w.b.Release()
		}
	}()
	topic := a.cfg.Kafka.Topic
	a.log.Info("archive started", "topic", topic, "table", strings.Join(a.tbl.Identifier(), "."),
		"resume_from", a.offsets.Topic(topic), "max_records", a.cfg.Archive.MaxRecords, "max_interval", a.cfg.Archive.MaxInterval)
	refresh := time.NewTicker(30 * time.Second)
	defer refresh.Stop()
	for {
		recs, err := a.collect(ctx)
		if err != nil {
			return err
		}
		if len(recs) > 0 {
			fctx := ctx
			if ctx.Err() != nil {
				var cancel context.CancelFunc
				fctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), shutdownFlush)
				defer cancel()
			}
			if err := a.flush(fctx, recs); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			a.log.Info("archive stopped", "offsets", a.offsets.Topic(topic))
			return nil
		}
		select {
		case <-refresh.C:
			if err := a.addNewPartitions(ctx); err != nil {
				a.log.Warn("archive partition refresh", "err", err)
			}
		default:
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
	workers, err := newWorkers(sc)
	if err != nil {
		return fmt.Errorf("archive: table %s: %w", strings.Join(tbl.Identifier(), "."), err)
	}
	a.tbl, a.sc, a.workers, a.offsets, a.hwm = tbl, sc, workers, offsets, map[int32]int64{}
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
	a.cl, err = kafka.Connect(k.Brokers, kafka.SecurityOf(k),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{k.Topic: a.startOffsets(parts)}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ProduceRequestTimeout(k.ProduceTimeout),
	)
	if err != nil {
		releaseWorkers()
		return err
	}
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
	a.consumed = append(a.consumed, added...)
	a.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{a.cfg.Kafka.Topic: a.startOffsets(added)})
	a.log.Info("archive consumes new partitions", "partitions", added)
	return nil
}

// collect polls one micro-batch: until MaxRecords records, MaxInterval after
// the first record, or the end of ctx.
func (a *Archiver) collect(ctx context.Context) ([]*kgo.Record, error) {
	max := a.cfg.Archive.MaxRecords
	var recs []*kgo.Record
	var deadline time.Time
	for len(recs) < max && ctx.Err() == nil {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if !deadline.IsZero() {
			if time.Until(deadline) <= 0 {
				break
			}
			pctx, cancel = context.WithDeadline(ctx, deadline)
		}
		fetches := a.cl.PollRecords(pctx, max-len(recs))
		cancel()
		if fetches.IsClientClosed() {
			return nil, errors.New("archive: kafka client closed")
		}
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.Canceled) || errors.Is(fe.Err, context.DeadlineExceeded) {
				continue
			}
			a.log.Warn("archive fetch", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
		}
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if p.Topic == a.cfg.Kafka.Topic && p.HighWatermark >= 0 {
				a.hwm[p.Partition] = p.HighWatermark
			}
		})
		before := len(recs)
		fetches.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
		if before == 0 && len(recs) > 0 {
			deadline = time.Now().Add(a.cfg.Archive.MaxInterval)
		}
		a.updateLag()
	}
	return recs, nil
}

// worker decodes a share of a micro-batch into its own builder.
type worker struct {
	b   *schemas.EventBuilder
	ev  schemas.UserInteraction
	dlq []*kgo.Record
}

// minShare is the fewest records worth a goroutine of their own.
const minShare = 4096

func newWorkers(sc *arrow.Schema) ([]*worker, error) {
	n := max(1, min(runtime.GOMAXPROCS(0), 8))
	ws := make([]*worker, 0, n)
	for range n {
		b, err := schemas.NewEventBuilder(memory.DefaultAllocator, sc)
		if err != nil {
			for _, w := range ws {
				w.b.Release()
			}
			return nil, err
		}
		ws = append(ws, &worker{b: b})
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

// decode decodes and validates recs, in parallel shares, into Arrow record
// batches of the valid ones and dead letters for the others (in order).
func (a *Archiver) decode(recs []*kgo.Record) (built []arrow.RecordBatch, dlq []*kgo.Record) {
	n := min(len(a.workers), max(1, len(recs)/minShare))
	share := (len(recs) + n - 1) / n
	var wg sync.WaitGroup
	for i, w := range a.workers[:n] {
		part := recs[i*share : min((i+1)*share, len(recs))]
		wg.Go(func() {
			w.dlq = w.dlq[:0]
			for _, r := range part {
				if err := schemas.Decode(r.Value, &w.ev, a.clock(r)); err != nil {
					w.dlq = append(w.dlq, kafka.DeadLetter(a.cfg.Kafka.DLQTopic, r, Stage, err))
					continue
				}
				w.b.Append(&w.ev, r.Partition, r.Offset)
			}
		})
	}
	wg.Wait()
	for _, w := range a.workers[:n] {
		dlq = append(dlq, w.dlq...)
		clear(w.dlq)
		rec := w.b.NewRecordBatch()
		if rec.NumRows() == 0 {
			rec.Release()
			continue
		}
		built = append(built, rec)
	}
	return built, dlq
}

// flush archives one micro-batch: dead letters first (acknowledged), then
// the valid records and the new offsets in one Iceberg commit.
func (a *Archiver) flush(ctx context.Context, recs []*kgo.Record) error {
	start := time.Now()
	topic := a.cfg.Kafka.Topic
	held := a.offsets.Topic(topic)
	batchMax := map[int32]int64{}
	todo := recs[:0:0]
	for _, r := range recs {
		if off, ok := held[r.Partition]; ok && r.Offset <= off {
			// Already in the table: never archive a record twice, whatever
			// the consumer delivers (a reset, a redelivery).
			continue
		}
		if cur, ok := batchMax[r.Partition]; !ok || r.Offset > cur {
			batchMax[r.Partition] = r.Offset
		}
		todo = append(todo, r)
	}
	if skipped := len(recs) - len(todo); skipped > 0 {
		a.log.Warn("archive skipped records already archived", "records", skipped)
	}
	if len(todo) == 0 {
		return nil
	}

	built, dlq := a.decode(todo)
	decoded := time.Now()
	release := func() {
		for _, r := range built {
			r.Release()
		}
	}
	if len(dlq) > 0 {
		pctx, cancel := context.WithTimeout(ctx, a.cfg.Kafka.ProduceTimeout)
		err := a.cl.ProduceSync(pctx, dlq...).FirstErr()
		cancel()
		if err != nil {
			release() // the records are read again on restart
			return fmt.Errorf("archive: produce %d records to %s: %w", len(dlq), a.cfg.Kafka.DLQTopic, err)
		}
		hook("dlq-acked")
	}

	rows := 0
	for _, r := range built {
		rows += int(r.NumRows())
	}
	var files []iceberg.DataFile
	writeStart := time.Now()
	if len(built) > 0 {
		var err error
		if files, err = lakehouse.WriteDataFiles(ctx, a.tbl, a.sc, built...); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		hook("files-written")
	}

	var committedOffsets lakehouse.Offsets
	commitStart := time.Now()
	tbl, err := a.lake.Commit(ctx, a.tbl, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
		fresh, err := lakehouse.SnapshotOffsets(cur.Metadata(), cur.CurrentSnapshot())
		if err != nil {
			return nil, err
		}
		freshTopic := fresh.Topic(topic)
		for p := range batchMax {
			mine, mineOK := held[p]
			theirs, theirsOK := freshTopic[p]
			if mineOK != theirsOK || mine != theirs {
				return nil, fmt.Errorf("archive: partition %d: table holds offset %s, this archiver expected %s: %w",
					p, fmtOffset(theirs, theirsOK), fmtOffset(mine, mineOK), ErrFenced)
			}
		}
		next := fresh.Clone()
		for p, off := range batchMax {
			next.Advance(topic, p, off)
		}
		committedOffsets = next
		return lakehouse.AppendTxn(ctx, cur, files, next.Properties())
	}, lakehouse.CommitOptions{OnConflict: func(int, error) { a.m.commitRetries.Inc() }})
	if err != nil {
		return err
	}
	hook("committed")
	a.m.commitSeconds.Observe(time.Since(commitStart).Seconds())
	a.tbl, a.offsets = tbl, committedOffsets
	a.m.commits.Inc()
	a.m.archived.Add(float64(rows))
	a.m.deadLettered.Add(float64(len(dlq)))
	a.updateLag()
	a.commitGroup(ctx, batchMax)

	snap := tbl.CurrentSnapshot()
	a.log.Info("archive commit",
		"records", rows, "dead_lettered", len(dlq), "files", len(files),
		"snapshot", snap.SnapshotID, "partitions", len(batchMax),
		"decode_ms", decoded.Sub(start).Milliseconds(), "dlq_ms", writeStart.Sub(decoded).Milliseconds(),
		"write_ms", commitStart.Sub(writeStart).Milliseconds(), "commit_ms", time.Since(commitStart).Milliseconds(),
		"batch_ms", time.Since(start).Milliseconds())
	return nil
}

func fmtOffset(off int64, ok bool) string {
	if !ok {
		return "none"
	}
	return fmt.Sprint(off)
}

// commitGroup records the archived position in the consumer group, for lag
// monitoring only. Failures are logged, never fatal: the table is the truth.
func (a *Archiver) commitGroup(ctx context.Context, batchMax map[int32]int64) {
	if a.cfg.Archive.Group == "" {
		return
	}
	var offs kadm.Offsets
	for p := range batchMax {
		offs.AddOffset(a.cfg.Kafka.Topic, p, a.offsets[a.cfg.Kafka.Topic][p]+1, -1)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(a.cl).CommitOffsets(cctx, a.cfg.Archive.Group, offs)
	if err == nil {
		err = resp.Error()
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
