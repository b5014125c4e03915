// Package store owns lambdarec's serving store: the interface through which the
// batch layer publishes its view, the speed layer upserts its real-time view and
// the serving layer reads both, the types of those views, and the in-process
// backend (the embedded default). The ClickHouse backend lives in
// internal/store/clickhouse and the Redis backend in internal/store/redis;
// all three pass the conformance suite in internal/store/storetest.
//
// Two views are kept:
//
//   - the batch view (BatchView), recomputed from the master dataset and
//     published atomically under its batch id: readers see either the previous
//     view or the whole new one, never a mix;
//   - the real-time view (SessionView), one record per session, upserted by the
//     speed layer and versioned by the Kafka offset it reflects, so replays are
//     idempotent and an older write never overwrites a newer one.
package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Scored is one recommended or similar item with its score. Higher scores are
// better; lists of Scored are ordered best first.
type Scored struct {
	Item  string  `json:"item"`
	Score float64 `json:"score"`
}

// BatchMeta describes one published batch view.
type BatchMeta struct {
	// BatchID names the batch; unique per publish. Required.
	BatchID string `json:"batch_id"`
	// SnapshotID is the Iceberg snapshot of `events` the batch read.
	SnapshotID int64 `json:"snapshot_id"`
	// Boundary maps each Kafka partition of `events` to the highest offset the
	// batch includes. The speed layer counts only records past it.
	Boundary map[int32]int64 `json:"boundary"`
	// Events is the number of events the batch read.
	Events int64 `json:"events"`
	// CreatedAt is when the batch run computed the view.
	CreatedAt time.Time `json:"created_at"`
	// SourceMaxEventTime is the newest event time among the events read.
	SourceMaxEventTime time.Time `json:"source_max_event_time"`
}

// BatchView is one whole batch view, as published by a batch run.
type BatchView struct {
	Meta BatchMeta
	// Neighbors maps an item to its similar items, best first.
	Neighbors map[string][]Scored
	// UserRecs maps a user to that user's recommendations, best first.
	UserRecs map[string][]Scored
	// UserItems maps a user of UserRecs to what the recommendations were
	// scored from: the user's distinct recent items, most recent (rank 0)
	// first. With the Neighbors lists of the same batch they give each
	// recommendation's explanation exactly (see serving's explain). Nil in
	// batches published before it existed: their items are not explained.
	UserItems map[string][]string
	// Popular is the popularity fallback, best first.
	Popular []Scored
}

// SessionView is the real-time view of one session, written by the speed layer.
type SessionView struct {
	SessionID string `json:"session_id"`
	UserID    string `json:"user_id"`
	// Items are the session's recommendations, best first.
	Items []Scored `json:"items"`
	// Purchased are the items bought in the session; the serving layer
	// excludes them from every answer.
	Purchased []string `json:"purchased"`
	// EventTime is the event time of the newest event included (the maximum
	// so far, so it does not decrease as Offset grows).
	EventTime time.Time `json:"event_time"`
	// Partition and Offset locate the newest Kafka record reflected. The
	// version is (Offset, UpdatedAt): an upsert applies only if its Offset is
	// greater than the stored one, or equal with a later UpdatedAt (the
	// speed layer scores a view again when rows it read changed, without a
	// new record of the session). A session's events share one partition
	// (the Kafka key is the session id), so offsets of one session are
	// comparable.
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
	// UpdatedAt is when the speed layer computed this view.
	UpdatedAt time.Time `json:"updated_at"`
	// Explanation is what Items' scores were computed from, encoded
	// (ExplanationWriter; DecodeExplanation reads it); nil: not written, as
	// by a speed layer older than it. It is stored with the view and read
	// back only by ExplainedSession: Session leaves it nil.
	Explanation []byte `json:"-"`
}

// Store is the serving store. Implementations are safe for concurrent use.
//
// Reads of the batch view (Similar, UserRecs, Popular) refer to the current
// batch. Unknown items, users and sessions, and a store with no batch yet, give
// empty answers, not errors. k <= 0 gives an empty answer; k larger than the
// stored list gives the whole list. An empty answer is a nil slice. Returned
// slices, maps and views belong to the caller.
//
// After Close every method but Close returns an error wrapping ErrClosed.
type Store interface {
	// PublishBatch loads a whole batch view and then makes it current,
	// atomically: a concurrent reader sees the previous view or the whole new
	// one, never a mix, and never the new batch id before its data is
	// loaded. The last published batch is current. Views of older batches
	// are then removed, except the few most recent ones the backend retains
	// (see RetainedBatches). Publishing a batch id that was already published
	// returns an error wrapping ErrBatchExists; an invalid view (see
	// ValidateBatch) is rejected and the current batch is unchanged.
	//
	// The store may keep v's maps and slices: callers must not modify them
	// after publishing.
	PublishBatch(ctx context.Context, v *BatchView) error
	// RetainedBatches returns the ids of the batches whose views are still
	// stored, newest (the current one) first. The in-process backend keeps
	// only the current view; the ClickHouse backend also keeps the previous
	// ones its retention allows, so replicas still reading them are not cut
	// off.
	RetainedBatches(ctx context.Context) ([]string, error)
	// CurrentBatch returns the metadata of the current batch, and false when
	// no batch has been published.
	CurrentBatch(ctx context.Context) (BatchMeta, bool, error)
	// Similar returns up to k items similar to item, best first.
	Similar(ctx context.Context, item string, k int) ([]Scored, error)
	// UserRecs returns up to k batch recommendations for user, best first.
	UserRecs(ctx context.Context, user string, k int) ([]Scored, error)
	// Popular returns up to k popular items, best first.
	Popular(ctx context.Context, k int) ([]Scored, error)
	// UserItems returns the items user's batch recommendations were scored
	// from (BatchView.UserItems), most recent first; nil when the current
	// batch has none for user.
	UserItems(ctx context.Context, user string) ([]string, error)

	// UpsertSession stores s unless the stored view of s.SessionID is not
	// older by version (Newer): a replay or an older write is a no-op. The
	// store copies what it keeps of s (Explanation included): the caller
	// may reuse s's slices once it returns.
	UpsertSession(ctx context.Context, s SessionView) error
	// UpsertSessions is UpsertSession for many views at once, the fast path
	// for the speed layer. Within one call, views of the same session follow
	// the same rule (the newest version wins).
	UpsertSessions(ctx context.Context, ss []SessionView) error
	// Session returns the newest stored view of a session, and false when the
	// session is unknown. Its Explanation is nil.
	Session(ctx context.Context, id string) (SessionView, bool, error)
	// ExplainedSession is Session with the view's Explanation, read with
	// the view (one version: the explanation is of the items returned). It
	// is the read of explain=true, off the hot path (no cache answers it).
	ExplainedSession(ctx context.Context, id string) (SessionView, bool, error)
	// ExpireSessions removes sessions whose newest event (EventTime) is before
	// cutoff and returns how many were removed when the backend knows (-1
	// when it does not). Backends may expire coarsely, as long as sessions
	// with events at or after cutoff are kept; see each backend's docs.
	ExpireSessions(ctx context.Context, cutoff time.Time) (int64, error)

	// Close releases the store's resources. It is idempotent.
	Close() error
}

// Sentinel errors callers branch on.
var (
	// ErrClosed is returned by every method of a closed store.
	ErrClosed = errors.New("store closed")
	// ErrBatchExists is returned when a batch id is published twice.
	ErrBatchExists = errors.New("batch already published")
)

// ValidateBatch checks a view before it is published: a non-empty batch id,
// non-empty keys and item ids, and finite scores. Backends call it first.
func ValidateBatch(v *BatchView) error {
	if v == nil {
		return errors.New("batch view is nil")
	}
	if v.Meta.BatchID == "" {
		return errors.New("batch view: empty batch id")
	}
	check := func(what, key string, list []Scored) error {
		for i, s := range list {
			if s.Item == "" {
				return fmt.Errorf("batch view %s: %s %q: entry %d: empty item", v.Meta.BatchID, what, key, i)
			}
			if math.IsNaN(s.Score) || math.IsInf(s.Score, 0) {
				return fmt.Errorf("batch view %s: %s %q: entry %d: score is not finite", v.Meta.BatchID, what, key, i)
			}
		}
		return nil
	}
	for item, list := range v.Neighbors {
		if item == "" {
			return fmt.Errorf("batch view %s: neighbors: empty item key", v.Meta.BatchID)
		}
		if err := check("neighbors", item, list); err != nil {
			return err
		}
	}
	for user, list := range v.UserRecs {
		if user == "" {
			return fmt.Errorf("batch view %s: user recs: empty user key", v.Meta.BatchID)
		}
		if err := check("user recs", user, list); err != nil {
			return err
		}
	}
	for user, items := range v.UserItems {
		if user == "" {
			return fmt.Errorf("batch view %s: user items: empty user key", v.Meta.BatchID)
		}
		if slices.Contains(items, "") {
			return fmt.Errorf("batch view %s: user items %q: empty item", v.Meta.BatchID, user)
		}
	}
	return check("popular", "", v.Popular)
}

// ValidateSession checks a session view before it is upserted: a non-empty
// session id, a non-negative offset, and an explanation of a known format
// (its content is checked when it is read: SessionExplanation.Validate).
func ValidateSession(s *SessionView) error {
	if s.SessionID == "" {
		return errors.New("session view: empty session id")
	}
	if s.Offset < 0 {
		return fmt.Errorf("session view %s: negative offset %d", s.SessionID, s.Offset)
	}
	if err := CheckExplanation(s.Explanation); err != nil {
		return fmt.Errorf("session view %s: explanation: %w", s.SessionID, err)
	}
	return nil
}

// Top returns a copy of the first k entries of list (none when k <= 0).
func Top(list []Scored, k int) []Scored {
	if k <= 0 || len(list) == 0 {
		return nil
	}
	if k > len(list) {
		k = len(list)
	}
	out := make([]Scored, k)
	copy(out, list)
	return out
}

// Newer reports whether view a is a newer version than b: a greater Offset,
// or the same Offset scored later (UpdatedAt).
func Newer(a, b *SessionView) bool { return newerThan(a, b.Offset, b.UpdatedAt) }

// newerThan is Newer against a view of version (offset, updatedAt).
func newerThan(a *SessionView, offset int64, updatedAt time.Time) bool {
	return a.Offset > offset || a.Offset == offset && a.UpdatedAt.After(updatedAt)
}
