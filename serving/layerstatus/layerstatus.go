// Package layerstatus owns what GET /v1/status says about the archive, the
// speed layer and the batch layer. Every report is read from the shared
// systems — consumer-group offsets and end offsets in Kafka, snapshots and
// batch_runs in Iceberg — so a serving replica reports on layers running in
// other processes exactly as `lambdarec dev` does on its own.
package layerstatus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/lambdarec/lambdarec/batch"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/serving"
	"github.com/lambdarec/lambdarec/speed"
)

// endOffsets returns the next offset to be written of each partition of topic.
func endOffsets(ctx context.Context, adm *kadm.Client, topic string) (map[int32]int64, error) {
	lo, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	var errs []error
	lo.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, o.Err)
			return
		}
		out[o.Partition] = o.Offset
	})
	return out, errors.Join(errs...)
}

// lagPast sums, over the partitions of end, the records after next-1:
// next[p] is the first offset not yet processed (absent: none processed).
func lagPast(end, next map[int32]int64) int64 {
	var lag int64
	for p, e := range end {
		lag += max(0, e-next[p])
	}
	return lag
}

// groupNext returns the committed offsets of group on topic.
func groupNext(ctx context.Context, adm *kadm.Client, group, topic string) (map[int32]int64, error) {
	next, _, err := groupCommits(ctx, adm, group, topic)
	return next, err
}

// groupCommits returns the committed offsets of group on topic and each
// commit's metadata.
func groupCommits(ctx context.Context, adm *kadm.Client, group, topic string) (next map[int32]int64, meta map[int32]string, err error) {
	resp, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{}, map[int32]string{}, nil // the group never committed: no position
	}
	if err != nil {
		return nil, nil, fmt.Errorf("offsets of group %s: %w", group, err)
	}
	next, meta = map[int32]int64{}, map[int32]string{}
	resp.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At >= 0 {
			next[o.Partition] = o.At
			meta[o.Partition] = o.Metadata
		}
	})
	return next, meta, nil
}

// shedFault is the FaultSpeedStateFull of the speed members whose last
// commits say they shed sessions within the window (speed.ShedFromCommit):
// the newest stamp, with the partitions whose commits carry a stamp.
func shedFault(meta map[int32]string, now time.Time) (serving.Fault, bool) {
	var n uint64
	var last time.Time
	var parts []int32
	for p, m := range meta {
		c, at, ok := speed.ShedFromCommit(m)
		if !ok || now.Sub(at) >= serving.SpeedStateFullWindow {
			continue
		}
		parts = append(parts, p)
		if at.After(last) {
			n, last = c, at
		}
	}
	if len(parts) == 0 {
		return serving.Fault{}, false
	}
	slices.Sort(parts)
	f, ok := serving.SpeedStateFull(fmt.Sprintf("the speed member that last committed partitions %v", parts), n, last, now)
	if ok {
		f.Layer = ""
		f.Details["partitions"] = parts
	}
	return f, ok
}

// Archive reports the archiver: its last commit to the events table, and
// the records of topic not yet in it.
func Archive(lake *lakehouse.Lakehouse, adm *kadm.Client, topic string) serving.StatusSource {
	return serving.StatusFunc(func(ctx context.Context) (serving.LayerStatus, error) {
		st := serving.LayerStatus{Layer: "archive", LagRecords: -1, LagSeconds: -1}
		t, err := lake.LoadTable(ctx, lakehouse.EventsTable)
		if err != nil && !errors.Is(err, catalog.ErrNoSuchTable) {
			return st, err
		}
		var snap *table.Snapshot
		if err == nil {
			snap = t.CurrentSnapshot()
		}
		if snap == nil {
			// Nothing archived yet: every record of the topic waits.
			end, err := endOffsets(ctx, adm, topic)
			if err != nil {
				return st, err
			}
			st.LagRecords = lagPast(end, nil)
			if st.LagRecords == 0 {
				st.LagSeconds = 0
			}
			return st, nil
		}
		st.LastUpdate = time.UnixMilli(snap.TimestampMs).UTC()
		boundary, err := lakehouse.Boundary(t, snap, topic)
		if err != nil {
			return st, err
		}
		st.Details = map[string]any{"snapshot_id": snap.SnapshotID, "offsets": boundary}
		end, err := endOffsets(ctx, adm, topic)
		if err != nil {
			return st, err
		}
		st.LagRecords = lagPast(end, nextOf(boundary))
		faults, err := tableOffsetFaults(ctx, t, adm, topic)
		if err != nil {
			return st, err
		}
		st.Faults = append(st.Faults, regressionFaults(faults)...)
		if len(faults) > 0 {
			st.Details["offset_faults"] = faults
		}
		st.LagSeconds = lagSeconds(st.LagRecords, st.LastUpdate, time.Now())
		return st, nil
	})
}

// FaultOffsetRegression is serving's code for a partition whose Kafka log
// no longer continues the offsets a layer holds.
const FaultOffsetRegression = serving.FaultOffsetRegression

// regressionFaults are the status faults of partitions a layer stopped
// because their log no longer continues its offsets: each makes the layer
// down and names topic, partition, stored and broker offsets.
func regressionFaults(faults []kafka.LogFault) []serving.Fault {
	var out []serving.Fault
	for _, f := range faults {
		out = append(out, serving.Fault{Code: FaultOffsetRegression, State: serving.StateDown,
			Message: "offset regression on " + f.String(),
			Details: map[string]any{"topic": f.Topic, "partition": f.Partition, "reason": f.Reason,
				"stored_offset": f.StoredOffset, "broker_start_offset": f.BrokerStartOffset, "broker_end_offset": f.BrokerEndOffset}})
	}
	return out
}

// lagSeconds is how long records have waited for a layer that last made
// progress at last: 0 when none wait.
func lagSeconds(lag int64, last, now time.Time) float64 {
	if lag <= 0 {
		return 0
	}
	if last.IsZero() {
		return -1
	}
	return max(0, now.Sub(last).Seconds())
}

// Batch reports the current batch: when it ran, and the records of topic
// past its boundary (what the speed layer covers until the next batch).
func Batch(lake *lakehouse.Lakehouse, adm *kadm.Client, topic string) serving.StatusSource {
	return serving.StatusFunc(func(ctx context.Context) (serving.LayerStatus, error) {
		st := serving.LayerStatus{Layer: serving.BatchLayer, LagRecords: -1, LagSeconds: -1}
		run, ok, err := batch.LatestRun(ctx, lake)
		if err != nil {
			return st, err
		}
		if !ok {
			return st, nil
		}
		st.LastUpdate = run.FinishedAt
		st.Details = map[string]any{
			"batch_id": run.BatchID, "source_snapshot_id": run.SourceSnapshotID, "boundary": run.Boundary,
			"events": run.EventsAccepted, "duration_ms": run.DurationMS,
		}
		// The batch served may be a pinned one (lambdarec batch pin /
		// rollback): the speed layer covers what is past its boundary.
		served, ok, err := batch.ServedRun(ctx, lake)
		if err != nil {
			return st, err
		}
		boundary := run.Boundary
		if ok {
			st.Details["served_batch_id"] = served.Run.BatchID
			st.Details["served_as"] = served.PublishID
			if served.Pin.Pinned() {
				st.Details["pinned"] = served.Pin
				st.Details["served_boundary"] = served.Run.Boundary
				boundary = served.Run.Boundary
			}
		}
		end, err := endOffsets(ctx, adm, topic)
		if err != nil {
			return st, err
		}
		st.LagRecords = lagPast(end, nextOf(boundary))
		return st, nil
	})
}

// Speed reports the speed layer's consumer group. The group commits its
// replay horizon (the first record of the oldest session it holds), not its
// position, so the lag shown is an upper bound, reported but not judged
// against status.max_lag (it would flag every long session); the speed
// role's own /readyz and the sum of lambdarec_speed_lag_records give its exact
// lag, and inside `lambdarec dev` SpeedLayer reports it.
func Speed(adm *kadm.Client, group, topic string) serving.StatusSource {
	return serving.StatusFunc(func(ctx context.Context) (serving.LayerStatus, error) {
		st := serving.LayerStatus{Layer: "speed", LagRecords: -1, LagSeconds: -1, LagUpperBound: true}
		next, meta, err := groupCommits(ctx, adm, group, topic)
		if err != nil {
			return st, err
		}
		if f, ok := shedFault(meta, time.Now()); ok {
			st.Faults = append(st.Faults, f)
		}
		end, err := endOffsets(ctx, adm, topic)
		if err != nil {
			return st, err
		}
		if len(next) == 0 && lagPast(end, nil) > 0 {
			st.Faults = append(st.Faults, serving.Fault{Code: "no_position", State: serving.StateDegraded,
				Message: fmt.Sprintf("consumer group %s has committed no position on %s although it holds records", group, topic)})
		}
		st.LagRecords = lagPast(end, next)
		st.Details = map[string]any{"group": group, "committed_horizon": next, "lag_is_upper_bound": true}
		return st, nil
	})
}

// nextOf turns "highest offset included" into "first offset not included".
func nextOf(boundary map[int32]int64) map[int32]int64 {
	out := make(map[int32]int64, len(boundary))
	for p, o := range boundary {
		out[p] = o + 1
	}
	return out
}

// SpeedLayer reports a speed layer running in this process (inside
// `lambdarec dev`): its exact lag, the same figure as its
// lambdarec_speed_lag_records metric (summed), and whether it is ready.
func SpeedLayer(l *speed.Layer, group string) serving.StatusSource {
	return serving.StatusFunc(func(context.Context) (serving.LayerStatus, error) {
		st := serving.LayerStatus{Layer: "speed", LagRecords: -1, LagSeconds: -1}
		st.LagRecords, st.LagSeconds = l.Lag()
		st.LastUpdate = l.LastProcessed()
		if st.LagRecords < 0 {
			st.LagSeconds = -1
		}
		st.Details = map[string]any{"group": group, "batch_id": l.BatchID(), "positions": l.Positions(), "ready": l.Ready()}
		if !l.Ready() {
			st.Faults = append(st.Faults, serving.Fault{Code: "replaying", State: serving.StateDegraded,
				Message: "the speed layer has not yet joined its group or replayed its partitions up to their end offsets"})
		}
		st.Faults = append(st.Faults, regressionFaults(l.Faults())...)
		return st, nil
	})
}
