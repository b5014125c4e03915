package speed

import (
	"context"
	"time"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
)

// Batch is a published batch as the speed layer needs it.
type Batch struct {
	// Meta names the batch and carries its boundary: the highest offset of
	// each partition the batch includes. A partition absent from it is not
	// covered at all.
	Meta store.BatchMeta
	// Model holds the batch's aggregates over the records at or below the
	// boundary: at least its full co-visitation counts (not only the top-K
	// rows), which the layer adds its deltas to. The layer only reads it.
	Model *model.Model
	// TopicID is the Kafka topic ID of the log the boundary's offsets were
	// read from ("" unknown). When the broker's topic has another ID, the
	// boundary says nothing about its records: the layer stops the
	// partitions the boundary covers rather than count the new log's
	// records as covered.
	TopicID string
}

// BatchSource tells the speed layer about published batches.
type BatchSource interface {
	// Latest returns the current batch, or nil, nil when none was published.
	// It is called every BatchPollInterval; returning the same batch id again
	// is cheap for the layer (nothing happens).
	Latest(ctx context.Context) (*Batch, error)
}

// BatchSourceFunc adapts a function to BatchSource.
type BatchSourceFunc func(ctx context.Context) (*Batch, error)

// Latest calls f.
func (f BatchSourceFunc) Latest(ctx context.Context) (*Batch, error) { return f(ctx) }

// ViewWriter receives the real-time view; store.Store implements it.
type ViewWriter interface {
	// UpsertSessions stores views, keeping for each session the one with the
	// greatest offset.
	UpsertSessions(ctx context.Context, views []store.SessionView) error
}

// ViewExpirer is an optional capability of a ViewWriter: when present, the
// layer periodically removes views whose newest event is older than twice
// SessionTimeout.
type ViewExpirer interface {
	ExpireSessions(ctx context.Context, cutoff time.Time) (int64, error)
}
