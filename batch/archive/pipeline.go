package archive

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/schemas"
)

// This file holds the stages of a micro-batch and how they overlap. A batch
// is prepared (records the table holds or of stopped partitions dropped),
// encoded (decoded and validated into Arrow record batches, on every core),
// written (as Parquet files, one writer per share) and committed (dead
// letters acknowledged, then one Iceberg snapshot with the new offsets).
// The writing and the commit of a batch run in the background while the
// next batch is collected and encoded — the Parquet encoding of one batch
// beside the decoding of the next keeps both cores busy where each stage
// alone leaves one idle at its end. A batch's files are written as soon as
// it is encoded, beside the previous batch's commit (files not committed
// are orphans, whatever happens to it), but it is committed only once that
// commit has succeeded, so snapshots keep the order of the log and each
// commit is fenced against the offsets the previous one recorded, as
// before.
//
// The consuming side never moves while a commit is in flight: whatever
// changes where partitions are read from or stops them (a log check, new
// partitions, a fetch error) first settles the pending commit, so every
// decision about the log is taken against offsets the table holds. A
// commit that fails is retried from scratch (flushRetrying: the same
// records encoded again), exactly as a failed synchronous flush was; the
// batch encoded meanwhile waits for it.

// microBatch is a micro-batch on its way into the table.
type microBatch struct {
	recs     []*kgo.Record   // as collected: a retry starts again from them
	todo     []*kgo.Record   // the records to archive
	batchMax map[int32]int64 // highest offset of each partition in todo

	// Set by encodeBatch.
	parts []arrow.RecordBatch // the valid records, one batch per share
	rows  int
	dlq   []*kgo.Record // dead letters of the invalid records, in order
	start time.Time
	coded time.Time

	// Set by writeBatch, from parts; in flushAsync, by the time written is
	// closed, with its error in writeErr.
	files    []iceberg.DataFile
	writeMs  int64
	written  chan struct{}
	writeErr error

	// Set when its commit starts, and by the commit.
	held    map[int32]int64 // what the table holds before it (the fence)
	done    chan struct{}   // closed when the commit returned
	err     error
	offsets lakehouse.Offsets // the table's offsets after it
}

// prepare returns the batch of recs to archive given that the table holds
// held (nil when there is none): records of stopped partitions, records
// the table already holds and records the batch holds already are dropped.
func (a *Archiver) prepare(recs []*kgo.Record, held map[int32]int64) *microBatch {
	b := &microBatch{recs: recs, batchMax: map[int32]int64{}, todo: make([]*kgo.Record, 0, len(recs)), start: time.Now()}
	stopped, dups := 0, 0
	for _, r := range recs {
		if a.faults.Has(r.Partition) {
			// Fetched before its log was found changed: never archived.
			stopped++
			continue
		}
		if off, ok := held[r.Partition]; ok && r.Offset <= off {
			// Already in the table: never archive a record twice, whatever
			// the consumer delivers (a reset, a redelivery).
			continue
		}
		if cur, ok := b.batchMax[r.Partition]; ok && r.Offset <= cur {
			// Already in this batch: a partition consumed again from the
			// table's offset (restartPartitions) delivers it a second time.
			dups++
			continue
		}
		b.batchMax[r.Partition] = r.Offset
		b.todo = append(b.todo, r)
	}
	if skipped := len(recs) - len(b.todo) - stopped - dups; skipped > 0 {
		a.log.Warn("archive skipped records already archived", "records", skipped)
	}
	if dups > 0 {
		a.log.Warn("archive skipped records delivered twice", "records", dups)
	}
	if len(b.todo) == 0 {
		return nil
	}
	return b
}

// expected returns the offsets the table holds once the pending commit, if
// any, succeeds.
func (a *Archiver) expected() map[int32]int64 {
	held := a.offsets.Topic(a.cfg.Kafka.Topic)
	if a.pending == nil {
		return held
	}
	out := maps.Clone(held)
	if out == nil {
		out = map[int32]int64{}
	}
	maps.Copy(out, a.pending.batchMax)
	return out
}

// encodeBatch decodes and validates b's records into Arrow record batches
// and keeps its dead letters.
func (a *Archiver) encodeBatch(b *microBatch) {
	b.parts, b.rows, b.dlq = a.encode(b.todo)
	b.coded = time.Now()
}

// writeBatch writes b's records as data files (not committed).
func (a *Archiver) writeBatch(ctx context.Context, b *microBatch) error {
	start := time.Now()
	if testFail != nil {
		if err := testFail("write"); err != nil {
			b.release()
			return err
		}
	}
	parts := b.parts
	b.parts = nil
	files, err := a.write(ctx, a.tbl, parts)
	if err != nil {
		// Files written by the other shares are never committed: orphan
		// cleanup (maintenance) deletes them.
		return fmt.Errorf("archive: %w", err)
	}
	b.files, b.writeMs = files, time.Since(start).Milliseconds()
	return nil
}

// release frees the record batches of a batch that is not written.
func (b *microBatch) release() {
	for _, r := range b.parts {
		r.Release()
	}
	b.parts = nil
}

// flush archives one micro-batch now, with nothing pending: prepared,
// encoded and committed in turn.
func (a *Archiver) flush(ctx context.Context, recs []*kgo.Record) error {
	b := a.prepare(recs, a.offsets.Topic(a.cfg.Kafka.Topic))
	if b == nil {
		return nil
	}
	a.encodeBatch(b)
	if err := a.writeBatch(ctx, b); err != nil {
		return err
	}
	b.held = a.offsets.Topic(a.cfg.Kafka.Topic)
	offsets, err := a.commit(ctx, b)
	if err != nil {
		return err
	}
	a.committed(offsets)
	return nil
}

// flushAsync encodes recs while the previous batch is written and commits,
// then, once that commit has succeeded, starts writing and committing recs
// in the background with cctx. Any error it returns is one flushRetrying
// returned.
func (a *Archiver) flushAsync(ctx, fctx, cctx context.Context, recs []*kgo.Record) error {
	b := a.prepare(recs, a.expected())
	if b == nil {
		return a.settle(ctx, fctx)
	}
	a.encodeBatch(b)
	// Its files are written at once, beside the previous batch's commit
	// (writing depends on no commit; committing does, below).
	b.written = make(chan struct{})
	go func() {
		defer close(b.written)
		b.writeErr = a.writeBatch(cctx, b)
	}()
	if err := a.settle(ctx, fctx); err != nil {
		// The batch is dropped with the run; its files, if any, are
		// orphans.
		<-b.written
		return err
	}
	b.held = maps.Clone(a.offsets.Topic(a.cfg.Kafka.Topic))
	b.done = make(chan struct{})
	a.pending = b
	go func() {
		defer close(b.done)
		<-b.written
		// A failed write is retried as a failed commit is (settle).
		if b.err = b.writeErr; b.err == nil {
			b.offsets, b.err = a.commit(cctx, b)
		}
	}()
	return nil
}

// settle waits for the pending commit. When it failed, the batch is flushed
// again from scratch (flushRetrying); the error is what that returned.
func (a *Archiver) settle(ctx, fctx context.Context) error {
	p := a.pending
	if p == nil {
		return nil
	}
	<-p.done
	a.pending = nil
	if p.err == nil {
		a.committed(p.offsets)
		return nil
	}
	if errors.Is(p.err, ErrFenced) {
		return p.err
	}
	return a.flushRetrying(ctx, fctx, p.recs, p.err)
}

// drain waits for the pending commit, if any, without acting on its
// outcome: Run returns.
func (a *Archiver) drain() {
	if p := a.pending; p != nil {
		<-p.done
		if p.err == nil {
			a.committed(p.offsets)
		}
		a.pending = nil
	}
}

// settleInline settles the pending commit from within a poll (before the
// consumer's positions or the partitions' faults change). An error stops
// the run: collect returns it.
func (a *Archiver) settleInline(ctx context.Context) {
	if a.pending == nil || a.fatal != nil {
		return
	}
	fctx, cancel := flushContext(ctx)
	defer cancel()
	if err := a.settle(ctx, fctx); err != nil {
		a.fatal = err
	}
}

// flushContext returns the context a flush runs with: ctx, or once ctx has
// ended, one that gives the flush shutdownFlush more.
func flushContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx.Err() == nil {
		return ctx, func() {}
	}
	return context.WithTimeout(context.WithoutCancel(ctx), shutdownFlush)
}

// committed records that the table now holds offsets.
func (a *Archiver) committed(offsets lakehouse.Offsets) {
	a.offsets = offsets
	a.updateLag()
	if a.failing {
		a.failing = false
		a.flushErr.Store(nil)
		a.setReady()
		a.log.Info("archive flush recovered")
	}
}

// commit commits b: its dead letters first (acknowledged), then its files
// and the new offsets in one Iceberg snapshot, fenced against b.held. It
// returns the offsets the table holds after it. It touches no state of the
// consuming side, so it runs beside the next batch's collect and encode.
func (a *Archiver) commit(ctx context.Context, b *microBatch) (lakehouse.Offsets, error) {
	topic := a.cfg.Kafka.Topic
	// The table is loaded afresh for every commit and the committed table
	// is not kept: see the tbl field.
	cur, err := a.lake.LoadTable(ctx, lakehouse.EventsTable)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	if len(b.files) > 0 {
		hook("files-written")
	}
	dlqStart := time.Now()
	var dlq []*kgo.Record
	for _, l := range b.dlq {
		if pos, ok := sourcePosition(l); ok {
			if _, sent := a.dlqDone[pos]; sent {
				continue // sent before a restart
			}
		}
		dlq = append(dlq, l)
	}
	if len(dlq) > 0 {
		pctx, cancel := context.WithTimeout(ctx, a.cfg.Kafka.ProduceTimeout)
		results := a.cl.ProduceSync(pctx, dlq...)
		cancel()
		for _, pr := range results {
			if pr.Err != nil {
				continue
			}
			// Sent: never again, and the next snapshot's DLQ positions
			// start past it.
			if pos, ok := sourcePosition(pr.Record); ok {
				a.dlqDone[pos] = schemas.Position{Partition: pr.Record.Partition, Offset: pr.Record.Offset}
			}
			a.dlqNext.Advance(a.cfg.Kafka.DLQTopic, pr.Record.Partition, pr.Record.Offset+1)
		}
		if err := results.FirstErr(); err != nil {
			// The records are read again on restart; the files written
			// are orphans.
			return nil, fmt.Errorf("archive: produce %d records to %s: %w", len(dlq), a.cfg.Kafka.DLQTopic, err)
		}
		hook("dlq-acked")
	}

	if testFail != nil {
		if err := testFail("commit"); err != nil {
			return nil, err
		}
	}
	var next lakehouse.Offsets
	commitStart := time.Now()
	// A commit that races another writer (a compaction or snapshot expiry
	// by maintenance) is rebuilt on the reloaded table by lake.Commit: the
	// fence below then compares against the offsets the winner carried
	// forward, which are this archiver's own.
	tbl, err := a.lake.Commit(ctx, cur, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
		fresh, err := lakehouse.SnapshotOffsets(cur.Metadata(), cur.CurrentSnapshot())
		if err != nil {
			return nil, err
		}
		freshTopic := fresh.Topic(topic)
		for p := range b.batchMax {
			mine, mineOK := b.held[p]
			theirs, theirsOK := freshTopic[p]
			if mineOK != theirsOK || mine != theirs {
				return nil, fmt.Errorf("archive: partition %d: table holds offset %s, this archiver expected %s: %w",
					p, fmtOffset(theirs, theirsOK), fmtOffset(mine, mineOK), ErrFenced)
			}
		}
		freshIDs, err := lakehouse.SnapshotTopicIDs(cur.Metadata(), cur.CurrentSnapshot())
		if err != nil {
			return nil, err
		}
		if id := freshIDs[topic]; id != "" && a.topicID != "" && id != a.topicID {
			return nil, fmt.Errorf("archive: table holds offsets of topic id %s, this archiver reads topic id %s: %w", id, a.topicID, ErrFenced)
		}
		next = fresh.Clone()
		for p, off := range b.batchMax {
			next.Advance(topic, p, off)
		}
		return lakehouse.AppendTxn(ctx, cur, b.files, a.commitProperties(next, freshIDs))
	}, lakehouse.CommitOptions{Appends: b.files, OnConflict: func(int, error) { a.m.commitRetries.Inc() }})
	if err != nil {
		return nil, err
	}
	hook("committed")
	a.m.commitSeconds.Observe(time.Since(commitStart).Seconds())
	a.pruneDLQDone(next)
	a.m.commits.Inc()
	a.m.archived.Add(float64(b.rows))
	a.m.deadLettered.Add(float64(len(dlq)))
	a.commitGroup(ctx, next)

	a.log.Info("archive commit",
		"records", b.rows, "dead_lettered", len(dlq), "files", len(b.files),
		"snapshot", tbl.CurrentSnapshot().SnapshotID, "partitions", len(b.batchMax),
		"encode_ms", b.coded.Sub(b.start).Milliseconds(), "write_ms", b.writeMs, "dlq_ms", commitStart.Sub(dlqStart).Milliseconds(),
		"commit_ms", time.Since(commitStart).Milliseconds(),
		"batch_ms", time.Since(b.start).Milliseconds())
	return next, nil
}
