package serving

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// LayerStatus is what a layer reports about itself at /v1/status.
type LayerStatus struct {
	// Layer names the layer: "archive", "speed", "batch", …
	Layer string `json:"layer"`
	// LastUpdate is when the layer last made progress (the archive's last
	// commit, the speed layer's last upsert, the last batch run). Zero when
	// it has not yet.
	LastUpdate time.Time `json:"last_update,omitzero"`
	// LagRecords is how many Kafka records the layer has yet to process
	// (consumer lag summed over partitions), or -1 when unknown.
	LagRecords int64 `json:"lag_records"`
	// Healthy is the layer's own verdict.
	Healthy bool `json:"healthy"`
	// Details are free-form, layer-specific facts (committed offsets, the
	// Iceberg snapshot, the next scheduled run, …). They must encode as JSON.
	Details map[string]any `json:"details,omitempty"`
}

// StatusSource reports the status of one layer. Status should return
// quickly; it is given a context bounded by APIConfig.StatusTimeout. An error
// is shown as the layer being unhealthy, with the error's message.
type StatusSource interface {
	Status(ctx context.Context) (LayerStatus, error)
}

// StatusFunc adapts a function to StatusSource.
type StatusFunc func(ctx context.Context) (LayerStatus, error)

// Status calls f.
func (f StatusFunc) Status(ctx context.Context) (LayerStatus, error) { return f(ctx) }

// AddStatusSource adds a layer to /v1/status. Safe to call while serving.
func (a *API) AddStatusSource(s StatusSource) {
	a.mu.Lock()
	a.sources = append(a.sources, s)
	a.mu.Unlock()
}

// LayerReport is one layer in the answer of GET /v1/status.
type LayerReport struct {
	LayerStatus
	// StalenessSeconds is the age of LastUpdate; null when the layer has
	// not updated yet.
	StalenessSeconds *float64 `json:"staleness_seconds"`
	// Error is why the layer could not report, or why it is unhealthy.
	Error string `json:"error,omitempty"`
}

// Status is the answer of GET /v1/status.
type Status struct {
	// Healthy is true when every layer is healthy.
	Healthy bool      `json:"healthy"`
	Now     time.Time `json:"now"`
	// Batch is the batch view served now; null before the first publish or
	// when the store cannot be read.
	Batch *BatchAsOf `json:"batch"`
	// Layers are the serving store (layer "serving_store") followed by the
	// registered StatusSources, in registration order.
	Layers []LayerReport `json:"layers"`
}

// StoreLayer is the layer name of the serving store in /v1/status.
const StoreLayer = "serving_store"

func (a *API) status(ctx context.Context) Status {
	a.mu.RLock()
	sources := append([]StatusSource(nil), a.sources...)
	a.mu.RUnlock()

	layers := make([]LayerReport, 1+len(sources))
	var wg sync.WaitGroup
	for i, src := range sources {
		wg.Go(func() {
			layers[1+i] = a.sourceReport(ctx, src)
		})
	}

	now := a.now()
	st := Status{Now: now}
	sctx, cancel := context.WithTimeout(ctx, a.cfg.StatusTimeout)
	meta, ok, err := a.store.CurrentBatch(sctx)
	cancel()
	storeLayer := LayerReport{LayerStatus: LayerStatus{Layer: StoreLayer, LagRecords: -1, Healthy: err == nil}}
	switch {
	case err != nil:
		storeLayer.Error = err.Error()
	case ok:
		st.Batch = batchAsOf(meta, now)
		storeLayer.LastUpdate = meta.CreatedAt
		storeLayer.Details = map[string]any{"batch_id": meta.BatchID}
	default:
		storeLayer.Details = map[string]any{"batch_id": nil}
	}
	layers[0] = storeLayer
	wg.Wait()

	st.Healthy = true
	for i := range layers {
		l := &layers[i]
		if !l.LastUpdate.IsZero() {
			s := staleness(now, l.LastUpdate)
			l.StalenessSeconds = &s
		}
		st.Healthy = st.Healthy && l.Healthy
	}
	st.Layers = layers
	return st
}

// sourceReport asks one source, bounding its time and containing its panics.
func (a *API) sourceReport(ctx context.Context, src StatusSource) (rep LayerReport) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.StatusTimeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			a.log.Error("status source panicked", "panic", fmt.Sprint(p))
			rep = LayerReport{LayerStatus: LayerStatus{Layer: "unnamed", LagRecords: -1}, Error: fmt.Sprintf("status source panicked: %v", p)}
		}
	}()
	ls, err := src.Status(ctx)
	rep = LayerReport{LayerStatus: ls}
	if err != nil {
		rep.Healthy = false
		rep.Error = err.Error()
	}
	if rep.Layer == "" {
		rep.Layer = "unnamed"
	}
	if rep.Details != nil {
		if _, err := json.Marshal(rep.Details); err != nil {
			rep.Details = nil
			rep.Healthy = false
			rep.Error = fmt.Sprintf("details do not encode as JSON: %v", err)
		}
	}
	return rep
}

// handleStatus answers 200 whatever the layers' health: the body says what
// is wrong. /readyz is the probe for load balancers.
func (a *API) handleStatus(w http.ResponseWriter, r *http.Request) {
	if r.URL.RawQuery != "" {
		if e := eachParam(r.URL.RawQuery, func(key, _ string) *Error { return unknownParam(key, "no parameters") }); e != nil {
			a.m.badRequests.Inc()
			WriteError(w, http.StatusBadRequest, *e)
			return
		}
	}
	WriteJSON(w, http.StatusOK, a.status(r.Context()))
}
