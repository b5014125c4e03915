// Package readscore owns read-time scoring: the contract by which a serving
// process asks a speed member to score a session now — from the session's
// recent items and the member's merged rows (the batch ⊕ the deltas of all
// members) as they are when the request is served — so that an answer is
// exact when read, not only at the session's last event.
//
// It holds the request and result types and the Scorer interface: the speed
// layer implements it (in `dev` the serving layer calls its speed layer
// directly), and a standalone `serve` reaches the speed members through this
// package's HTTP handler and client (POST /internal/v1/score on a member's
// speed.metrics_addr).
package readscore

import (
	"context"
	"errors"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// Request is what a session is scored from: what its stored view was
// scored from, less the rows.
type Request struct {
	// Recent are the session's distinct recent items, most recent (rank 0)
	// first, as its stored view's explanation lists them
	// (store.SessionExplanation.Recent).
	Recent []string `json:"recent"`
	// Purchased are the items bought in the session (store.SessionView's),
	// excluded from the answer.
	Purchased []string `json:"purchased,omitempty"`
}

// Result is a session scored now: what the speed layer would write as the
// session's view if it scored it at ScoredAt.
type Result struct {
	// Items are the recommendations, best first (speed.view_items of them
	// at most).
	Items []store.Scored `json:"items"`
	// Explanation is Items' explanation, encoded as a stored view's
	// (store.ExplanationWriter); empty when the member writes none
	// (speed.explanations: false).
	Explanation []byte `json:"explanation,omitempty"`
	// BatchID is the batch whose rows the scorer merged with the deltas.
	BatchID string `json:"batch_id"`
	// ScoredAt is when the member scored.
	ScoredAt time.Time `json:"scored_at"`
}

// Scorer scores sessions at read time. Implementations are safe for
// concurrent use.
type Scorer interface {
	// ScoreRecent scores req now. It returns an error wrapping ErrNotReady
	// when the scorer cannot score yet (not joined, still replaying, no
	// rows, stopping): the caller answers from the stored view.
	ScoreRecent(ctx context.Context, req Request) (Result, error)
}

// ErrNotReady is returned (wrapped) by a Scorer that cannot score now.
var ErrNotReady = errors.New("readscore: the speed layer cannot score now")
