package main

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/lambdarec/lambdarec/serving"
)

// A speed layer whose bounds bite (speed.max_sessions, speed.max_state_bytes,
// speed.max_retained_events) is visible wherever it runs: in `dev`'s
// /v1/status, at a `lambdarec speed` member's own GET /v1/status (on
// speed.metrics_addr), and in `serve`'s /v1/status through the member's
// offset commits (serving/layerstatus.Speed) — degraded,
// serving.FaultSpeedStateFull, for serving.SpeedStateFullWindow after the
// last session shed — with a WARN at most once a minute and the metrics
// lambdarec_speed_sessions_evicted_total, …_retained_dropped_total and
// …_sessions_shed_last_timestamp_seconds.

// speedStateWatch judges a speed layer's shed sessions and logs them.
type speedStateWatch struct {
	last func() (n uint64, at time.Time) // speed.Layer.LastShed
	log  *slog.Logger

	mu     sync.Mutex
	logged uint64    // the count the last WARN reported
	logAt  time.Time // when
}

// speedStateLogEvery bounds the WARN lines about shed sessions.
const speedStateLogEvery = time.Minute

// fault returns the layer's FaultSpeedStateFull at now, if it shed a session
// within the window, and logs a WARN when it shed more since the last one
// (at most once per speedStateLogEvery).
func (w *speedStateWatch) fault(now time.Time) (serving.Fault, bool) {
	n, at := w.last()
	w.mu.Lock()
	if n > w.logged && now.Sub(w.logAt) >= speedStateLogEvery {
		w.logged, w.logAt = n, now
		w.log.Warn("speed layer evicting sessions: its state reached speed.max_sessions or speed.max_state_bytes; a session that continues starts over",
			"evicted_or_dropped_total", n, "last", at)
	}
	w.mu.Unlock()
	return serving.SpeedStateFull("", n, at, now)
}

// run looks every 10 s, so that shed sessions are logged while nobody asks
// for the status.
func (w *speedStateWatch) run(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			w.fault(now)
		}
	}
}

// speedMemberStatus is the answer of a speed member's GET /v1/status: the
// member's own view of itself, in the shape of a layer of serve's
// /v1/status (its lag is exact, from the member's positions).
type speedMemberStatus struct {
	Layer      string          `json:"layer"`
	State      string          `json:"state"`
	Healthy    bool            `json:"healthy"`
	Reasons    []serving.Fault `json:"reasons"`
	LagRecords int64           `json:"lag_records"`
	LagSeconds float64         `json:"lag_seconds"`
	LastUpdate time.Time       `json:"last_update,omitzero"`
	Now        time.Time       `json:"now"`
}

// speedMemberLayer is what the status handler reads of the speed layer.
type speedMemberLayer interface {
	Ready() bool
	Lag() (records int64, seconds float64)
	LastProcessed() time.Time
}

// speedStatusHandler serves a speed member's GET /v1/status: degraded with
// FaultSpeedStateFull while the watch reports it, degraded "replaying"
// while the member has not replayed its partitions. Always 200: the state is
// in the body (a member that sheds sessions is working; restarting it would
// not help).
func speedStatusHandler(l speedMemberLayer, w *speedStateWatch) http.HandlerFunc {
	return func(rw http.ResponseWriter, _ *http.Request) {
		now := time.Now()
		st := speedMemberStatus{Layer: "speed", State: serving.StateOK, Reasons: []serving.Fault{}, Now: now.UTC(),
			LastUpdate: l.LastProcessed()}
		st.LagRecords, st.LagSeconds = l.Lag()
		if !l.Ready() {
			st.Reasons = append(st.Reasons, serving.Fault{Code: "replaying", State: serving.StateDegraded,
				Message: "the speed layer has not yet joined its group or replayed its partitions up to their end offsets"})
		}
		if f, ok := w.fault(now); ok {
			st.Reasons = append(st.Reasons, f)
		}
		for _, f := range st.Reasons {
			if f.State == serving.StateDown || st.State == serving.StateOK {
				st.State = f.State
			}
		}
		st.Healthy = st.State == serving.StateOK
		serving.WriteJSON(rw, http.StatusOK, st)
	}
}
