package serving

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"
)

// States of a layer, and of the whole platform, at /v1/status, best first.
const (
	// StateOK: the layer reports and is within every threshold.
	StateOK = "ok"
	// StateDegraded: the layer answers, but late (lag or staleness past a
	// threshold) or with a fault it reported itself.
	StateDegraded = "degraded"
	// StateDown: the layer (or what /v1/status reads it from) cannot be
	// reached, or it reported a fault that stops it.
	StateDown = "down"
)

// stateRank orders states from best to worst.
func stateRank(s string) int {
	switch s {
	case StateOK:
		return 0
	case StateDegraded:
		return 1
	}
	return 2
}

func worse(a, b string) string {
	if stateRank(b) > stateRank(a) {
		return b
	}
	return a
}

// Reason codes of the faults /v1/status reports.
const (
	// FaultUnreachable: the layer's status could not be read (its error
	// is the message). The layer is down.
	FaultUnreachable = "unreachable"
	// FaultStoreUnreachable: the serving store does not answer. Down.
	FaultStoreUnreachable = "store_unreachable"
	// FaultLagRecords: more records wait for the layer than
	// status.max_lag.records. Degraded.
	FaultLagRecords = "lag_records"
	// FaultLagTime: records have waited for the layer longer than
	// status.max_lag.time. Degraded.
	FaultLagTime = "lag_time"
	// FaultBatchStale: the last batch run is older than twice the batch
	// schedule (or none ran within it). Degraded.
	FaultBatchStale = "batch_stale"
	// FaultOffsetRegression: the log a layer reads lost records it had
	// stored offsets for (reported by the layer's own fault source).
	FaultOffsetRegression = "offset_regression"
	// FaultStatusSlow: the layer's status did not answer within
	// APIConfig.StatusTimeout, and it answered within the last
	// StatusSlowGrace: the layer is shown as it last reported (its lag
	// judged as usual). Degraded; past the grace, unreachable and down.
	FaultStatusSlow = "status_slow"
	// FaultSpeedStateFull: the speed layer evicted live sessions (or
	// dropped retained ones) within the last SpeedStateFullWindow to stay
	// within speed.max_sessions / speed.max_state_bytes /
	// speed.max_retained_events: a session that continues starts over,
	// without its earlier events. Layer speed, degraded (SpeedStateFull).
	FaultSpeedStateFull = "speed_state_full"
)

// SpeedStateFullWindow is how long after the speed layer last shed a
// session /v1/status shows FaultSpeedStateFull.
const SpeedStateFullWindow = time.Minute

// SpeedStateFull is the FaultSpeedStateFull of a speed layer (who names it,
// "" for "the speed layer") that has shed n sessions so far, the last at
// last, judged at now; ok is false when it shed none within
// SpeedStateFullWindow.
func SpeedStateFull(who string, n uint64, last, now time.Time) (f Fault, ok bool) {
	if last.IsZero() || now.Sub(last) >= SpeedStateFullWindow {
		return Fault{}, false
	}
	if who == "" {
		who = "the speed layer"
	}
	details := map[string]any{"evicted_or_dropped": n, "last": last}
	return Fault{Layer: "speed", Code: FaultSpeedStateFull, State: StateDegraded,
		Message: fmt.Sprintf("%s evicted or dropped %d sessions so far (the last %.0fs ago) to stay within speed.max_sessions / speed.max_state_bytes: a session that continues starts over, without its earlier events",
			who, n, max(0, now.Sub(last).Seconds())),
		Details: details}, true
}

// StatusSlowGrace is how long a layer whose status reads time out is shown
// with its last report, degraded (FaultStatusSlow), before it is down
// (FaultUnreachable). On an overloaded machine a status read that asks the
// broker for offsets or the catalog for a table can take longer than
// APIConfig.StatusTimeout now and then while the layer works (in `lambdarec
// dev` under a 50,000 events/s flood, 1 read in about 20 timed out); a layer
// that is gone does not answer for longer than this.
const StatusSlowGrace = 30 * time.Second

// goodReport is the last report a status source answered without error.
type goodReport struct {
	ls LayerStatus
	at time.Time
}

// carryForward keeps l, the report of source i, as its last good one when
// it has no error; when it failed by timing out (slow) within
// StatusSlowGrace of the last good one, it replaces l with that one, plus a
// FaultStatusSlow reason and the lag's age brought up to now. Any other
// failure is left as it is: unreachable, down.
func (a *API) carryForward(l *LayerReport, i int, slow bool, now time.Time) {
	if l.Error == "" {
		if a.lastGood == nil {
			a.lastGood = map[int]goodReport{}
		}
		a.lastGood[i] = goodReport{ls: l.LayerStatus, at: now}
		return
	}
	g, ok := a.lastGood[i]
	if !slow || !ok || now.Sub(g.at) > StatusSlowGrace {
		return
	}
	age := max(0, now.Sub(g.at))
	ls := g.ls
	ls.Faults = append(slices.Clone(g.ls.Faults), Fault{Code: FaultStatusSlow, State: StateDegraded,
		Message: fmt.Sprintf("the layer's status did not answer within %s (the process or its broker is busy); shown as read %.0fs ago, down if it does not answer for %s: %s",
			a.cfg.StatusTimeout, age.Seconds(), StatusSlowGrace, l.Error)})
	if ls.LagSeconds > 0 {
		ls.LagSeconds += age.Seconds()
	}
	ls.Details = maps.Clone(ls.Details)
	if ls.Details == nil {
		ls.Details = map[string]any{}
	}
	ls.Details["status_as_of"] = g.at
	*l = LayerReport{LayerStatus: ls}
}

// Fault is one reason why a layer is not ok.
type Fault struct {
	// Layer is the layer the fault belongs to. A StatusSource may leave it
	// empty (its own layer); a FaultFunc must set it.
	Layer string `json:"-"`
	// Code is a stable reason code (the Fault… constants, or a layer's
	// own, such as "offset_regression").
	Code string `json:"code"`
	// State is what the fault makes the layer: degraded or down.
	State string `json:"state"`
	// Message says what is wrong, with the numbers.
	Message string `json:"message"`
	// Details are facts about the fault, such as the topic, partition,
	// stored and broker offsets of an offset regression. They must encode
	// as JSON.
	Details map[string]any `json:"details,omitempty"`
}

// LayerStatus is what a layer reports about itself at /v1/status. The
// layer's state is not its own verdict: /v1/status derives it from the
// error of StatusSource.Status, the Faults, and the thresholds
// (StatusThresholds) applied to the lag and the last update.
type LayerStatus struct {
	// Layer names the layer: "archive", "speed", "batch", …
	Layer string `json:"layer"`
	// LastUpdate is when the layer last made progress (the archive's last
	// commit, the speed layer's last processed record, the last batch run).
	// Zero when it has not yet.
	LastUpdate time.Time `json:"last_update,omitzero"`
	// LagRecords is how many Kafka records the layer has yet to process
	// (summed over partitions), or -1 when unknown.
	LagRecords int64 `json:"lag_records"`
	// LagSeconds is how long records have waited for the layer: 0 when it
	// is caught up, else the time since it last made progress; -1 when
	// unknown.
	LagSeconds float64 `json:"lag_seconds"`
	// LagUpperBound marks a lag that only bounds the true one from above
	// (the speed layer seen from another process: its committed replay
	// horizon). Such a lag is reported but not judged.
	LagUpperBound bool `json:"lag_upper_bound,omitempty"`
	// Faults are the layer's own reasons to be degraded or down.
	Faults []Fault `json:"-"`
	// Details are free-form, layer-specific facts (committed offsets, the
	// Iceberg snapshot, the next scheduled run, …). They must encode as JSON.
	Details map[string]any `json:"details,omitempty"`
}

// StatusSource reports the status of one layer. Status should return
// quickly; it is given a context bounded by APIConfig.StatusTimeout. An error
// is shown as the layer being down, with the error's message.
type StatusSource interface {
	Status(ctx context.Context) (LayerStatus, error)
}

// StatusFunc adapts a function to StatusSource.
type StatusFunc func(ctx context.Context) (LayerStatus, error)

// Status calls f.
func (f StatusFunc) Status(ctx context.Context) (LayerStatus, error) { return f(ctx) }

// FaultFunc reports faults found outside the layers' own status sources
// (for example an offset regression found by comparing stored offsets with
// the broker's); each Fault names its Layer. It is given a context bounded
// by APIConfig.StatusTimeout; an error is reported as a fault of no layer
// ("status").
type FaultFunc func(ctx context.Context) ([]Fault, error)

// AddStatusSource adds a layer to /v1/status. Safe to call while serving.
func (a *API) AddStatusSource(s StatusSource) {
	a.mu.Lock()
	a.sources = append(a.sources, s)
	a.mu.Unlock()
	a.invalidateStatus()
}

// AddFaultSource adds a source of faults to /v1/status. Safe to call while
// serving.
func (a *API) AddFaultSource(f FaultFunc) {
	a.mu.Lock()
	a.faults = append(a.faults, f)
	a.mu.Unlock()
	a.invalidateStatus()
}

// invalidateStatus makes the next status request evaluate anew.
func (a *API) invalidateStatus() {
	a.statusMu.Lock()
	a.statusAt = time.Time{}
	a.statusMu.Unlock()
}

// LayerReport is one layer in the answer of GET /v1/status.
type LayerReport struct {
	LayerStatus
	// State is ok, degraded or down: the worst of its Reasons.
	State string `json:"state"`
	// Healthy is State == ok.
	Healthy bool `json:"healthy"`
	// Reasons say why the layer is not ok; empty when it is.
	Reasons []Fault `json:"reasons"`
	// StalenessSeconds is the age of LastUpdate; null when the layer has
	// not updated yet.
	StalenessSeconds *float64 `json:"staleness_seconds"`
	// Error is why the layer could not report, when it could not.
	Error string `json:"error,omitempty"`
}

// Status is the answer of GET /v1/status.
type Status struct {
	// State is the worst state of the layers.
	State string `json:"state"`
	// Healthy is State == ok.
	Healthy bool      `json:"healthy"`
	Now     time.Time `json:"now"`
	// Batch is the batch view served now; null before the first publish or
	// when the store cannot be read.
	Batch *BatchAsOf `json:"batch"`
	// Layers are the serving store (layer "serving_store") followed by the
	// registered StatusSources, in registration order.
	Layers []LayerReport `json:"layers"`
	// ReadScoring is read-time scoring's state and recent fallbacks (not
	// judged: a fallback answers the stored view).
	ReadScoring *ReadScoringStatus `json:"read_scoring"`
}

// StoreLayer is the layer name of the serving store in /v1/status.
const StoreLayer = "serving_store"

// BatchLayer is the layer name whose LastUpdate is judged against the batch
// schedule.
const BatchLayer = "batch"

// statusTTL is how long an evaluated status is reused: /v1/status and
// /metrics read the same evaluation, and a burst of requests costs one.
const statusTTL = time.Second

// cachedStatus returns the status evaluated at most statusTTL ago, or
// evaluates it.
func (a *API) cachedStatus(ctx context.Context) Status {
	a.statusMu.Lock()
	defer a.statusMu.Unlock()
	if a.statusAt.IsZero() || time.Since(a.statusAt) >= statusTTL {
		a.lastStatus = a.status(ctx)
		a.statusAt = time.Now()
	}
	return a.lastStatus
}

func (a *API) status(ctx context.Context) Status {
	a.mu.RLock()
	sources := append([]StatusSource(nil), a.sources...)
	faultFns := append([]FaultFunc(nil), a.faults...)
	a.mu.RUnlock()

	layers := make([]LayerReport, 1+len(sources))
	extra := make([][]Fault, len(faultFns))
	var wg sync.WaitGroup
	slow := make([]bool, len(sources))
	for i, src := range sources {
		wg.Go(func() { layers[1+i], slow[i] = a.sourceReport(ctx, src) })
	}
	for i, f := range faultFns {
		wg.Go(func() { extra[i] = a.faultReport(ctx, f) })
	}

	now := a.now()
	st := Status{Now: now, ReadScoring: a.readScoringStatus()}
	storeLayer := LayerReport{LayerStatus: LayerStatus{Layer: StoreLayer, LagRecords: -1, LagSeconds: -1}}
	if err := a.storeHealth(ctx); err != nil {
		storeLayer.Error = err.Error()
		storeLayer.Faults = append(storeLayer.Faults, Fault{Code: FaultStoreUnreachable, State: StateDown, Message: err.Error()})
	} else {
		sctx, cancel := context.WithTimeout(ctx, a.cfg.StatusTimeout)
		meta, ok, err := a.store.CurrentBatch(sctx)
		cancel()
		switch {
		case err != nil:
			storeLayer.Error = err.Error()
			storeLayer.Faults = append(storeLayer.Faults, Fault{Code: FaultStoreUnreachable, State: StateDown, Message: "the serving store does not answer: " + err.Error()})
		case ok:
			st.Batch = batchAsOf(meta, now)
			storeLayer.LastUpdate = meta.CreatedAt
			storeLayer.Details = map[string]any{"batch_id": meta.BatchID}
		default:
			storeLayer.Details = map[string]any{"batch_id": nil}
		}
	}
	layers[0] = storeLayer
	wg.Wait()
	for i := range sources {
		a.carryForward(&layers[1+i], i, slow[i], now)
	}

	byName := make(map[string]int, len(layers))
	for i := range layers {
		if _, ok := byName[layers[i].Layer]; !ok {
			byName[layers[i].Layer] = i
		}
	}
	for _, fs := range extra {
		for _, f := range fs {
			i, ok := byName[f.Layer]
			if !ok {
				layers = append(layers, LayerReport{LayerStatus: LayerStatus{Layer: f.Layer, LagRecords: -1, LagSeconds: -1}})
				i = len(layers) - 1
				byName[f.Layer] = i
			}
			layers[i].Faults = append(layers[i].Faults, f)
		}
	}

	st.State = StateOK
	for i := range layers {
		l := &layers[i]
		if !l.LastUpdate.IsZero() {
			s := staleness(now, l.LastUpdate)
			l.StalenessSeconds = &s
		}
		a.judge(l, now)
		st.State = worse(st.State, l.State)
	}
	st.Healthy = st.State == StateOK
	st.Layers = layers
	return st
}

// judge sets l's state and reasons from its faults and the thresholds.
func (a *API) judge(l *LayerReport, now time.Time) {
	th := a.cfg.Thresholds
	reasons := make([]Fault, 0, len(l.Faults)+2)
	for _, f := range l.Faults {
		f.Layer = ""
		if f.State != StateDown {
			f.State = StateDegraded
		}
		reasons = append(reasons, f)
	}
	if l.Error != "" && len(reasons) == 0 {
		reasons = append(reasons, Fault{Code: FaultUnreachable, State: StateDown, Message: l.Error})
	}
	judgeLag := l.Layer != BatchLayer && l.Layer != StoreLayer && !l.LagUpperBound
	if judgeLag && th.MaxLagRecords > 0 && l.LagRecords > th.MaxLagRecords {
		reasons = append(reasons, Fault{Code: FaultLagRecords, State: StateDegraded,
			Message: fmt.Sprintf("%d records wait, more than the %d allowed (status.max_lag.records)", l.LagRecords, th.MaxLagRecords)})
	}
	if judgeLag && th.MaxLagTime > 0 && l.LagSeconds > th.MaxLagTime.Seconds() {
		reasons = append(reasons, Fault{Code: FaultLagTime, State: StateDegraded,
			Message: fmt.Sprintf("records have waited %.0fs, longer than the %s allowed (status.max_lag.time)", l.LagSeconds, th.MaxLagTime)})
	}
	if l.Layer == BatchLayer && l.Error == "" && th.BatchInterval > 0 {
		limit := 2 * th.BatchInterval
		switch {
		case !l.LastUpdate.IsZero() && now.Sub(l.LastUpdate) > limit:
			reasons = append(reasons, Fault{Code: FaultBatchStale, State: StateDegraded,
				Message: fmt.Sprintf("the last batch ran %.0fs ago, more than twice the schedule of %s", now.Sub(l.LastUpdate).Seconds(), th.BatchInterval)})
		case l.LastUpdate.IsZero() && now.Sub(a.started) > limit:
			reasons = append(reasons, Fault{Code: FaultBatchStale, State: StateDegraded,
				Message: fmt.Sprintf("no batch has run in %.0fs, more than twice the schedule of %s", now.Sub(a.started).Seconds(), th.BatchInterval)})
		}
	}
	l.State = StateOK
	for _, r := range reasons {
		l.State = worse(l.State, r.State)
	}
	l.Healthy = l.State == StateOK
	l.Reasons = reasons
	l.Faults = nil
}

// sourceReport asks one source, bounding its time and containing its
// panics; slow reports that it failed because that time ran out.
func (a *API) sourceReport(parent context.Context, src StatusSource) (rep LayerReport, slow bool) {
	ctx, cancel := context.WithTimeout(parent, a.cfg.StatusTimeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			a.log.Error("status source panicked", "panic", fmt.Sprint(p))
			rep = LayerReport{LayerStatus: LayerStatus{Layer: "unnamed", LagRecords: -1, LagSeconds: -1}, Error: fmt.Sprintf("status source panicked: %v", p)}
		}
	}()
	ls, err := src.Status(ctx)
	rep = LayerReport{LayerStatus: ls}
	if err != nil {
		rep.Error = err.Error()
		// The bound ran out, not the request's own context.
		slow = errors.Is(ctx.Err(), context.DeadlineExceeded) && parent.Err() == nil
	}
	if rep.Layer == "" {
		rep.Layer = "unnamed"
	}
	if rep.Details != nil {
		if _, err := json.Marshal(rep.Details); err != nil {
			rep.Details = nil
			rep.Error = fmt.Sprintf("details do not encode as JSON: %v", err)
		}
	}
	for i := range rep.Faults {
		if rep.Faults[i].Details != nil {
			if _, err := json.Marshal(rep.Faults[i].Details); err != nil {
				rep.Faults[i].Details = nil
			}
		}
	}
	return rep, slow
}

// faultReport asks one fault source, bounding its time and containing its
// panics; its failure is a fault of the layer "status".
func (a *API) faultReport(ctx context.Context, f FaultFunc) (out []Fault) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.StatusTimeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			a.log.Error("fault source panicked", "panic", fmt.Sprint(p))
			out = []Fault{{Layer: "status", Code: FaultUnreachable, State: StateDegraded, Message: fmt.Sprintf("fault source panicked: %v", p)}}
		}
	}()
	fs, err := f(ctx)
	if err != nil {
		fs = append(fs, Fault{Layer: "status", Code: FaultUnreachable, State: StateDegraded, Message: "fault source: " + err.Error()})
	}
	out = fs[:0:0]
	for _, x := range fs {
		if x.Layer == "" {
			x.Layer = "status"
		}
		if x.Details != nil {
			if _, err := json.Marshal(x.Details); err != nil {
				x.Details = nil
			}
		}
		out = append(out, x)
	}
	return out
}

// handleStatus answers 200 whatever the layers' state: the body says what
// is wrong. /readyz is the probe for load balancers. It takes no
// parameters; any given are ignored, as on every read endpoint.
func (a *API) handleStatus(w http.ResponseWriter, r *http.Request) {
	WriteJSON(w, http.StatusOK, a.cachedStatus(r.Context()))
}
