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
)

// defaultReadScoreTimeout is APIConfig.ReadScoreTimeout's default.
const defaultReadScoreTimeout = 50 * time.Millisecond

var readResults = []string{readResultRead, readResultNotReady, readResultError, readResultTimeout, readResultNoInputs}

// readScore scores sess at read time. It returns false, having counted why,
// when the stored view must be answered instead: the view has no stored
// explanation (no recent items to score from), or the scorer failed, was
// not ready or did not answer within the read score timeout.
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
	switch {
	case err == nil:
		a.countRead(readResultRead)
		return res, true
	case errors.Is(err, readscore.ErrNotReady):
		a.countRead(readResultNotReady)
	case timedOut:
		a.countRead(readResultTimeout)
	default:
		a.countRead(readResultError)
		a.log.Debug("read-time scoring failed; answering the stored view", "session", sess.SessionID, "err", err)
	}
	return readscore.Result{}, false
}

func (a *API) countRead(result string) {
	a.m.readScores[result].Inc()
	a.readWin.add(a.now(), result == readResultRead)
}

// readWindowLen is the length of each of the two windows of
// ReadScoringStatus's counts.
const readWindowLen = time.Minute

// readWindow counts read-time scorings of the current and the previous
// minute, for /v1/status.
type readWindow struct {
	mu    sync.Mutex
	start time.Time // of the current window
	cur   [2]int64  // read, fallback
	prev  [2]int64
}

func (w *readWindow) roll(now time.Time) {
	switch {
	case w.start.IsZero() || now.Sub(w.start) >= 2*readWindowLen:
		w.start, w.cur, w.prev = now, [2]int64{}, [2]int64{}
	case now.Sub(w.start) >= readWindowLen:
		w.start, w.prev, w.cur = w.start.Add(readWindowLen), w.cur, [2]int64{}
	}
}

func (w *readWindow) add(now time.Time, read bool) {
	w.mu.Lock()
	w.roll(now)
	if read {
		w.cur[0]++
	} else {
		w.cur[1]++
	}
	w.mu.Unlock()
}

func (w *readWindow) counts(now time.Time) (read, fallback int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.roll(now)
	return w.cur[0] + w.prev[0], w.cur[1] + w.prev[1]
}

// ReadScoringStatus is read-time scoring's part of /v1/status. A fallback
// answers the session's stored view, exact as of the session's last record:
// it is not judged degraded.
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
}

func (a *API) readScoringStatus() *ReadScoringStatus {
	s := &ReadScoringStatus{Enabled: a.scorer != nil}
	if !s.Enabled {
		return s
	}
	s.TimeoutSeconds = a.cfg.ReadScoreTimeout.Seconds()
	s.Scored, s.Fallbacks = a.readWin.counts(a.now())
	if n := s.Scored + s.Fallbacks; n > 0 {
		s.FallbackRatio = float64(s.Fallbacks) / float64(n)
	}
	return s
}
