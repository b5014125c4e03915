package serving

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Pinger is the optional capability of a serving store to check that its
// server answers, bypassing any cache (the ClickHouse store has it). A store
// without it is checked by reading its current batch.
type Pinger interface {
	Ping(ctx context.Context) error
}

// storeHealthTTL is how long a store check is reused: the /readyz check,
// /v1/status and the read endpoints share one check a second.
const storeHealthTTL = time.Second

// storeHealth caches the last store check.
type storeHealth struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

// storeHealth checks that the serving store answers, at most once per
// storeHealthTTL; concurrent callers wait for the one check. It is the
// "store" check of /readyz.
func (a *API) storeHealth(ctx context.Context) error {
	h := &a.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.at.IsZero() && time.Since(h.at) < storeHealthTTL {
		return h.err
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
	defer cancel()
	var err error
	if p, ok := a.store.(Pinger); ok {
		err = p.Ping(ctx)
	} else {
		_, _, err = a.store.CurrentBatch(ctx)
	}
	if err != nil && ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
		// The caller went away: say nothing about the store.
		return err
	}
	if err != nil {
		err = fmt.Errorf("serving store: %w", err)
	}
	if (err == nil) != (h.err == nil) {
		if err != nil {
			a.log.Warn("serving store unreachable", "err", err)
		} else {
			a.log.Info("serving store reachable again")
		}
	}
	h.at, h.err = time.Now(), err
	return err
}

// storeUnavailable answers 503 when the last store check failed, so that a
// read never passes off an empty answer from a cache as the store's. It
// reports whether it answered.
func (a *API) storeUnavailable(w http.ResponseWriter, r *http.Request, op string) bool {
	err := a.storeHealth(r.Context())
	if err == nil {
		return false
	}
	a.storeError(w, r, op, err)
	return true
}

// statusCollector exports the status of every layer at /metrics, from the
// same evaluation /v1/status answers with (cached for a second), so the two
// agree on lag and state.
type statusCollector struct{ a *API }

var (
	descLayerState = prometheus.NewDesc("lambdarec_status_layer_state",
		"State of a layer as /v1/status reports it: 1 for its current state (ok, degraded, down), 0 for the others.",
		[]string{"layer", "state"}, nil)
	descLayerLag = prometheus.NewDesc("lambdarec_status_lag_records",
		"Records a layer has yet to process, as /v1/status reports it (absent when unknown).",
		[]string{"layer"}, nil)
	descLayerLagSeconds = prometheus.NewDesc("lambdarec_status_lag_seconds",
		"How long records have waited for a layer, as /v1/status reports it (absent when unknown).",
		[]string{"layer"}, nil)
)

func (c statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLayerState
	ch <- descLayerLag
	ch <- descLayerLagSeconds
}

func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.a.cfg.StatusTimeout+time.Second)
	defer cancel()
	st := c.a.cachedStatus(ctx)
	seen := map[string]bool{}
	for _, l := range st.Layers {
		if seen[l.Layer] {
			continue
		}
		seen[l.Layer] = true
		for _, s := range []string{StateOK, StateDegraded, StateDown} {
			v := 0.0
			if l.State == s {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descLayerState, prometheus.GaugeValue, v, l.Layer, s)
		}
		if l.LagRecords >= 0 {
			ch <- prometheus.MustNewConstMetric(descLayerLag, prometheus.GaugeValue, float64(l.LagRecords), l.Layer)
		}
		if l.LagSeconds >= 0 {
			ch <- prometheus.MustNewConstMetric(descLayerLagSeconds, prometheus.GaugeValue, l.LagSeconds, l.Layer)
		}
	}
}
