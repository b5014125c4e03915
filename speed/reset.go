package speed

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lambdarec/lambdarec/internal/store"
)

// ErrGroupActive is returned by ResetToBatch when the group has members: the
// offsets of a live group cannot be set, and its members would commit over
// them.
var ErrGroupActive = errors.New("the consumer group has active members: stop every speed instance first")

// ResetToBatch sets the committed offsets of group on topic so that a speed
// deployment that lost them (a deleted group, expired offsets) rebuilds its
// state from the served batch b: for each partition of b's boundary B, the
// first record whose timestamp is at or after b's newest event time minus
// lookback (twice the session timeout: the sessions still open at the
// boundary), and never past B+1; partitions the boundary does not cover
// start at the log's start. Records at or below B are fed to their sessions
// without being counted (see Exactness in the package doc), so starting
// before B+1 never counts anything twice, and starting at the sessions'
// beginning keeps their pairs with records past B exact.
//
// It returns the offsets committed. The group must have no members.
func ResetToBatch(ctx context.Context, adm *kadm.Client, group, topic string, b store.BatchMeta, lookback time.Duration) (map[int32]int64, error) {
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("describe group %s: %w", group, err)
	}
	if g, ok := described[group]; ok && g.Err == nil && len(g.Members) > 0 {
		return nil, fmt.Errorf("reset group %s (state %s, %d members): %w", group, g.State, len(g.Members), ErrGroupActive)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	var since int64
	if !b.SourceMaxEventTime.IsZero() {
		since = b.SourceMaxEventTime.Add(-lookback).UnixMilli()
	}
	after, err := adm.ListOffsetsAfterMilli(ctx, since, topic)
	if err == nil {
		err = after.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s after %d ms: %w", topic, since, err)
	}
	out := map[int32]int64{}
	starts.Each(func(s kadm.ListedOffset) {
		from := s.Offset
		if hi, ok := b.Boundary[s.Partition]; ok {
			from = hi + 1
			if a, ok := after.Lookup(topic, s.Partition); ok && a.Offset >= 0 && a.Offset < from {
				from = max(a.Offset, s.Offset)
			}
		}
		out[s.Partition] = from
	})
	var os kadm.Offsets
	for _, p := range slices.Sorted(maps.Keys(out)) {
		os.AddOffset(topic, p, out[p], -1)
	}
	resps, err := adm.CommitOffsets(ctx, group, os)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("commit offsets of group %s: %w", group, err)
	}
	return out, nil
}
