package serving

// Read-time scoring: with a readscore.Scorer (APIDeps.Scorer), a session's
// real-time recommendations are scored when they are read, from the inputs
// its stored view was scored from (the recent items of its stored
// explanation and its purchases), so that they are exact as of the rows the
// scorer holds now, not only as of the session's last record. Any failure
// answers the stored view, as without a scorer, and is counted.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/lambdarec/lambdarec/internal/readscore"
	"github.com/lambdarec/lambdarec/internal/store"
)

// How a speed answer was scored (SpeedAsOf.Scored).
const (
	// ScoredRead: scored when read, by the speed layer (readscore).
	ScoredRead = "read"
	// ScoredView: the stored view, scored at the session's last record
	// (or rescored since).
	ScoredView = "view"
)

// Results of a read-time scoring, the result label of
// lambdarec_serve_read_scores_total. All but readResultRead answer the
// stored view.
const (
	readResultRead     = "read"
	readResultNotReady = "fallback_not_ready"
	readResultError    = "fallback_error"
	readResultTimeout  = "fallback_timeout"
	readResultNoInputs = "no_inputs"
	// readResultNoItems: the scoring failed (any reason above) for a view
	// stored without items (speed.score_views: false writes only a
	// session's inputs): the answer has no speed items, the batch and
	// popular layers fill it.
	readResultNoItems = "fallback_no_items"
)

// defaultReadScoreTimeout is APIConfig.ReadScoreTimeout's default.
const defaultReadScoreTimeout = 50 * time.Millisecond

var readResults = []string{readResultRead, readResultNotReady, readResultError, readResultTimeout, readResultNoInputs, readResultNoItems}

// readScore scores sess at read time. It returns false, having counted why,
// when the stored view must be answered instead: the view has no stored
// explanation (no recent items to score from), or the scorer failed, was
// not ready or did not answer within the read score timeout. A failed
// scoring of a view stored without items (its inputs only:
// speed.score_views false) is counted as readResultNoItems whatever the
// failure: that answer has no speed items.
func (a *API) readScore(ctx context.Context, sess *store.SessionView) (readscore.Result, bool) {
	recent, err := store.DecodeRecent(sess.Explanation)
	if err != nil || len(recent) == 0 {
		a.countRead(readResultNoInputs)
		return readscore.Result{}, false
	}
	rctx, cancel := context.WithTimeout(ctx, a.cfg.ReadScoreTimeout)
	start := time.Now()
	res, err := a.scorer.ScoreRecent(rctx, readscore.Request{Recent: recent, Purchased: sess.Purchased})
	a.m.readScoreSeconds.Observe(time.Since(start).Seconds())
	timedOut := rctx.Err() == context.DeadlineExceeded && ctx.Err() == nil
	cancel()
	var result string
	switch {
	case err == nil:
		a.countRead(readResultRead)
		return res, true
	case errors.Is(err, readscore.ErrNotReady):
		result = readResultNotReady
	case timedOut:
		result = readResultTimeout
	default:
		result = readResultError
		a.log.Debug("read-time scoring failed; answering the stored view", "session", sess.SessionID, "err", err)
	}
	if len(sess.Items) == 0 {
		result = readResultNoItems
	}
	a.countRead(result)
	return readscore.Result{}, false
}

func (a *API) countRead(result string) {
	a.m.readScores[result].Inc()
	a.readWin.add(a.now(), result)
}

// readWindowLen is the length of each of the two windows of
// ReadScoringStatus's counts.
const readWindowLen = time.Minute

// readWindow counts read-time scorings of the current and the previous
// minute, for /v1/status.
type readWindow struct {
	mu    sync.Mutex
	start time.Time // of the current window
	cur   [3]int64  // read, fallback, fallback without items (of fallback)
	prev  [3]int64
}

func (w *readWindow) roll(now time.Time) {
	switch {
	case w.start.IsZero() || now.Sub(w.start) >= 2*readWindowLen:
		w.start, w.cur, w.prev = now, [3]int64{}, [3]int64{}
	case now.Sub(w.start) >= readWindowLen:
		w.start, w.prev, w.cur = w.start.Add(readWindowLen), w.cur, [3]int64{}
	}
}

// add counts a read-time scoring of the given result (readResults).
func (w *readWindow) add(now time.Time, result string) {
	w.mu.Lock()
	w.roll(now)
	switch result {
	case readResultRead:
		w.cur[0]++
	case readResultNoItems:
		w.cur[1]++
		w.cur[2]++
	default:
		w.cur[1]++
	}
	w.mu.Unlock()
}

// counts returns the scorings read and the fallbacks of the window, and
// of those fallbacks the ones answering no speed items.
func (w *readWindow) counts(now time.Time) (read, fallback, noItems int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.roll(now)
	return w.cur[0] + w.prev[0], w.cur[1] + w.prev[1], w.cur[2] + w.prev[2]
}

// ReadScoringStatus is read-time scoring's part of /v1/status. A fallback
// answers the session's stored view, exact as of the session's last record
// (no speed items when the view holds only its inputs: NoItems): it is not
// judged degraded.
type ReadScoringStatus struct {
	// Enabled: a scorer is configured (serve.speed_scorers, or dev).
	Enabled bool `json:"enabled"`
	// TimeoutSeconds bounds one scoring (serve.speed_score_timeout).
	TimeoutSeconds float64 `json:"timeout_seconds"`
	// Scored and Fallbacks count the speed answers of the last one to two
	// minutes scored at read and answered from the stored view instead;
	// FallbackRatio is Fallbacks / (Scored + Fallbacks), 0 without any.
	Scored        int64   `json:"scored"`
	Fallbacks     int64   `json:"fallbacks"`
	FallbackRatio float64 `json:"fallback_ratio"`
	// NoItems counts the Fallbacks of a view stored without items (its
	// inputs only, speed.score_views false): answers without speed items.
	NoItems int64 `json:"no_items"`
}

func (a *API) readScoringStatus() *ReadScoringStatus {
	s := &ReadScoringStatus{Enabled: a.scorer != nil}
	if !s.Enabled {
		return s
	}
	s.TimeoutSeconds = a.cfg.ReadScoreTimeout.Seconds()
	s.Scored, s.Fallbacks, s.NoItems = a.readWin.counts(a.now())
	if n := s.Scored + s.Fallbacks; n > 0 {
		s.FallbackRatio = float64(s.Fallbacks) / float64(n)
	}
	return s
}
