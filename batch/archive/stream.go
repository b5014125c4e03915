package archive

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/schemas"
)

// This file holds the archiver's side of the stream: checking that the log
// it reads still continues the offsets the table holds, and reading back
// the dead letters it wrote before a restart.

const (
	// checkEvery is how often the log is checked while nothing goes wrong
	// (fetch errors and unexpected records check at once, at most once a
	// second).
	checkEvery = 30 * time.Second
	// pollWait bounds one poll, so checks and fault reports run while no
	// record comes.
	pollWait = time.Second
	// dlqScanTimeout bounds the read-back of the dead letters at start.
	dlqScanTimeout = time.Minute
)

// Ready reports whether the archiver is consuming every partition and its
// last flush succeeded: false before the first start, while a partition is
// stopped (Faults) and while flushes fail and are retried.
func (a *Archiver) Ready() bool { return a.ready.Load() }

// Faults returns the partitions the archiver stopped because their log no
// longer continues the offsets the table holds.
func (a *Archiver) Faults() []kafka.LogFault { return a.faults.List() }

func (a *Archiver) setReady() {
	a.ready.Store(a.started && !a.failing && a.faults.Len() == 0)
}

// heldAll returns the offset the table holds for each of parts, -1 for none.
func (a *Archiver) heldAll(parts []int32) map[int32]int64 {
	held := a.offsets.Topic(a.cfg.Kafka.Topic)
	out := make(map[int32]int64, len(parts))
	for _, p := range parts {
		if off, ok := held[p]; ok {
			out[p] = off
		} else {
			out[p] = -1
		}
	}
	return out
}

// periodic runs what the consuming loop does between polls: the log check
// and partition refresh every checkEvery, and the fault reports (each at
// most once a minute).
func (a *Archiver) periodic(ctx context.Context) {
	if time.Since(a.lastRefresh) < checkEvery {
		return
	}
	a.lastRefresh = time.Now()
	if err := a.addNewPartitions(ctx); err != nil {
		a.log.Warn("archive partition refresh", "err", err)
	}
	a.checkLog(ctx)
	a.faults.Report()
}

// checkLog compares the broker's log with the offsets the table holds: a
// partition whose log no longer continues them (topic recreated, log ended
// or started past them) is stopped and reported; one whose fault is gone
// (its log is back) is consumed again from the table's offset.
func (a *Archiver) checkLog(ctx context.Context) {
	if time.Since(a.lastCheck) < time.Second {
		return
	}
	a.lastCheck = time.Now()
	a.settleInline(ctx) // the check compares the log with what the table holds
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := kafka.DescribeLog(cctx, kadm.NewClient(a.admCl), a.cfg.Kafka.Topic)
	if err != nil {
		if ctx.Err() == nil {
			a.log.Warn("archive log check", "err", err)
		}
		return
	}
	a.applyCheck(v)
}

// applyCheck stops the partitions v shows faulted and restarts those whose
// fault is gone.
func (a *Archiver) applyCheck(v kafka.LogView) {
	topic := a.cfg.Kafka.Topic
	faults := v.Check(a.topicID, a.heldAll(a.consumed), true, time.Now())
	faulted := map[int32]bool{}
	var stop []int32
	for _, f := range faults {
		faulted[f.Partition] = true
		if a.faults.Set(f) {
			stop = append(stop, f.Partition)
		}
	}
	if len(stop) > 0 {
		a.cl.PauseFetchPartitions(map[string][]int32{topic: stop})
	}
	var restart []int32
	for _, f := range a.faults.List() {
		if !faulted[f.Partition] && a.faults.Clear(f.Partition) {
			restart = append(restart, f.Partition)
		}
	}
	if len(restart) > 0 {
		a.restartPartitions(restart)
	}
	a.m.faulted.Set(float64(a.faults.Len()))
	a.setReady()
}

// restartPartitions consumes parts again from the offsets the table holds,
// with fresh cursors.
func (a *Archiver) restartPartitions(parts []int32) {
	topic := a.cfg.Kafka.Topic
	// Records of parts polled ahead are read again.
	a.carry = slices.DeleteFunc(a.carry, func(r *kgo.Record) bool { return slices.Contains(parts, r.Partition) })
	a.cl.RemoveConsumePartitions(map[string][]int32{topic: parts})
	a.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: a.startOffsets(parts)})
	a.cl.ResumeFetchPartitions(map[string][]int32{topic: parts})
	a.log.Info("archive consumes partitions again", "partitions", parts)
}

// fetchFailed handles a fetch error of partition p: out of range for a
// partition of which nothing is held yet restarts it at the log start (the
// head was deleted before anything was read: nothing held is skipped);
// anything else triggers a log check.
func (a *Archiver) fetchFailed(ctx context.Context, p int32, err error) {
	a.settleInline(ctx)
	if errors.Is(err, kerr.OffsetOutOfRange) {
		if _, ok := a.offsets.Topic(a.cfg.Kafka.Topic)[p]; !ok {
			a.restartPartitions([]int32{p})
			return
		}
	}
	a.checkLog(ctx)
}

// scanDLQ reads back the dead letters this archiver may have written for
// records the table does not hold yet (written, then the process stopped
// before the commit): from the DLQ positions the table's snapshot recorded
// (the whole DLQ the first time) to its end. Those records are not
// dead-lettered again. It also sets the DLQ positions the next commit
// records.
func (a *Archiver) scanDLQ(ctx context.Context, admin *kgo.Client, next lakehouse.Offsets, known bool) error {
	k := a.cfg.Kafka
	ctx, cancel := context.WithTimeout(ctx, dlqScanTimeout)
	defer cancel()
	v, err := kafka.DescribeLog(ctx, kadm.NewClient(admin), k.DLQTopic)
	if err != nil {
		return fmt.Errorf("archive: dead letters: %w", err)
	}
	recorded := next.Topic(k.DLQTopic)
	from := map[int32]kgo.Offset{}
	remaining := map[int32]int64{} // partition → end offset still to reach
	for p, end := range v.End {
		start := v.Start[p]
		if n, ok := recorded[p]; known && ok && n >= start && n <= end {
			start = n
		} // else: first scan, new partition, or a DLQ log that was reset: all of it
		if start < end {
			from[p] = kgo.NewOffset().At(start)
			remaining[p] = end
		}
	}
	a.dlqNext = lakehouse.Offsets{k.DLQTopic: maps.Clone(v.End)}
	a.dlqDone = map[schemas.Position]schemas.Position{}
	if len(from) == 0 {
		return nil
	}
	cl, err := kafka.Connect(k.Brokers, kafka.SecurityOf(k), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{k.DLQTopic: from}))
	if err != nil {
		return err
	}
	defer cl.Close()
	held := a.offsets.Topic(k.Topic)
	scanned := 0
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("archive: read back dead letters of %s: %w", k.DLQTopic, err)
		}
		for _, fe := range fs.Errors() {
			a.log.Warn("archive dead letter read-back", "partition", fe.Partition, "err", fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			scanned++
			if r.Offset+1 >= remaining[r.Partition] {
				delete(remaining, r.Partition)
			}
			if st, _ := kafka.Header(r, kafka.HeaderStage); st != Stage {
				return
			}
			if t, _ := kafka.Header(r, kafka.HeaderSourceTopic); t != k.Topic {
				return
			}
			pos, ok := sourcePosition(r)
			if !ok {
				return
			}
			if off, ok := held[pos.Partition]; ok && pos.Offset <= off {
				return // committed before: never read again
			}
			a.dlqDone[pos] = schemas.Position{Partition: r.Partition, Offset: r.Offset}
		})
	}
	a.log.Info("archive read back dead letters", "scanned", scanned, "not_yet_committed", len(a.dlqDone))
	return nil
}

// sourcePosition returns the source position headers of a dead letter.
func sourcePosition(r *kgo.Record) (schemas.Position, bool) {
	ps, ok1 := kafka.Header(r, kafka.HeaderSourcePartition)
	os, ok2 := kafka.Header(r, kafka.HeaderSourceOffset)
	if !ok1 || !ok2 {
		return schemas.Position{}, false
	}
	p, err1 := strconv.ParseInt(ps, 10, 32)
	o, err2 := strconv.ParseInt(os, 10, 64)
	if err1 != nil || err2 != nil {
		return schemas.Position{}, false
	}
	return schemas.Position{Partition: int32(p), Offset: o}, true
}

// pruneDLQDone forgets the dead letters of records the table holds once it
// holds offsets.
func (a *Archiver) pruneDLQDone(offsets lakehouse.Offsets) {
	held := offsets.Topic(a.cfg.Kafka.Topic)
	maps.DeleteFunc(a.dlqDone, func(pos, _ schemas.Position) bool {
		off, ok := held[pos.Partition]
		return ok && pos.Offset <= off
	})
}

// dlqNextAfter returns the DLQ positions a snapshot holding offsets
// records: per DLQ partition, the first letter of a record the snapshot
// does not hold (a micro-batch may commit fewer records than a previous
// process had dead-lettered before it stopped), else the end as far as
// known.
func (a *Archiver) dlqNextAfter(offsets lakehouse.Offsets) lakehouse.Offsets {
	next := a.dlqNext.Clone()
	dlq := next[a.cfg.Kafka.DLQTopic]
	if dlq == nil {
		dlq = map[int32]int64{}
		next[a.cfg.Kafka.DLQTopic] = dlq
	}
	held := offsets.Topic(a.cfg.Kafka.Topic)
	for src, letter := range a.dlqDone {
		if off, ok := held[src.Partition]; ok && src.Offset <= off {
			continue
		}
		if cur, ok := dlq[letter.Partition]; !ok || letter.Offset < cur {
			dlq[letter.Partition] = letter.Offset
		}
	}
	return next
}

// commitProperties returns the snapshot summary properties of a commit of
// offsets: the offsets, the topic IDs they belong to (fresh's, with ours)
// and the DLQ positions.
func (a *Archiver) commitProperties(offsets lakehouse.Offsets, fresh lakehouse.TopicIDs) map[string]string {
	props := map[string]string{}
	maps.Copy(props, offsets.Properties())
	ids := maps.Clone(fresh)
	if ids == nil {
		ids = lakehouse.TopicIDs{}
	}
	if a.topicID != "" {
		ids[a.cfg.Kafka.Topic] = a.topicID
	}
	if len(ids) > 0 {
		props[lakehouse.TopicIDsProperty] = ids.Encode()
	}
	if a.dlqNext != nil {
		props[lakehouse.DLQNextProperty] = a.dlqNextAfter(offsets).Encode()
	}
	return props
}
