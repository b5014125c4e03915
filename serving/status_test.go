package serving

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

func statusOf(t *testing.T, h http.Handler) Status {
	t.Helper()
	r := get(t, h, "/v1/status")
	if r.status != http.StatusOK {
		t.Fatalf("/v1/status: %d %s", r.status, r.body)
	}
	var st Status
	decodeStrict(t, r.body, &st)
	return st
}

func layerOf(t *testing.T, st Status, name string) LayerReport {
	t.Helper()
	for _, l := range st.Layers {
		if l.Layer == name {
			return l
		}
	}
	t.Fatalf("no layer %s in %+v", name, st.Layers)
	return LayerReport{}
}

func reasonCodes(l LayerReport) []string {
	var out []string
	for _, r := range l.Reasons {
		out = append(out, r.Code+"/"+r.State)
	}
	return out
}

// Each threshold turns its layer degraded with a reason naming the numbers;
// a layer within them stays ok; the platform takes the worst state.
func TestStatusThresholds(t *testing.T) {
	th := StatusThresholds{MaxLagRecords: 100, MaxLagTime: time.Minute, BatchInterval: time.Minute}
	sources := []StatusSource{
		StatusFunc(func(context.Context) (LayerStatus, error) {
			return LayerStatus{Layer: "speed", LagRecords: 150, LagSeconds: 2}, nil
		}),
		StatusFunc(func(context.Context) (LayerStatus, error) {
			return LayerStatus{Layer: "archive", LagRecords: 10, LagSeconds: 120}, nil
		}),
		StatusFunc(func(context.Context) (LayerStatus, error) {
			// 333 s old against a 1-minute schedule: the case.
			return LayerStatus{Layer: BatchLayer, LastUpdate: testNow.Add(-333 * time.Second), LagRecords: 5000, LagSeconds: -1}, nil
		}),
		StatusFunc(func(context.Context) (LayerStatus, error) {
			// An upper bound is reported, not judged.
			return LayerStatus{Layer: "speed-remote", LagRecords: 1 << 40, LagSeconds: -1, LagUpperBound: true}, nil
		}),
	}
	f := newFixture(t, seeded(t, newMemory), APIConfig{Thresholds: th}, sources...)
	st := statusOf(t, f.h)
	if st.State != StateDegraded || st.Healthy {
		t.Fatalf("platform state %s healthy %v, want degraded", st.State, st.Healthy)
	}
	check := func(name, state string, codes ...string) {
		t.Helper()
		l := layerOf(t, st, name)
		if l.State != state || l.Healthy != (state == StateOK) || strings.Join(reasonCodes(l), ",") != strings.Join(codes, ",") {
			t.Errorf("%s: state %s reasons %v, want %s %v", name, l.State, reasonCodes(l), state, codes)
		}
	}
	check(StoreLayer, StateOK)
	check("speed", StateDegraded, "lag_records/degraded")
	check("archive", StateDegraded, "lag_time/degraded")
	check(BatchLayer, StateDegraded, "batch_stale/degraded")
	check("speed-remote", StateOK)
	if m := layerOf(t, st, BatchLayer).Reasons[0].Message; !strings.Contains(m, "333s") || !strings.Contains(m, "1m0s") {
		t.Errorf("batch reason %q does not name the age and the schedule", m)
	}
	if m := layerOf(t, st, "speed").Reasons[0].Message; !strings.Contains(m, "150") || !strings.Contains(m, "100") {
		t.Errorf("speed reason %q does not name the lag and the limit", m)
	}

	// Within the thresholds: ok.
	ok := newFixture(t, seeded(t, newMemory), APIConfig{Thresholds: th},
		StatusFunc(func(context.Context) (LayerStatus, error) {
			return LayerStatus{Layer: "archive", LagRecords: 100, LagSeconds: 60}, nil
		}),
		StatusFunc(func(context.Context) (LayerStatus, error) {
			return LayerStatus{Layer: BatchLayer, LastUpdate: testNow.Add(-119 * time.Second), LagRecords: 1 << 30}, nil
		}))
	if st := statusOf(t, ok.h); st.State != StateOK || !st.Healthy {
		t.Errorf("within thresholds: %+v", st)
	}
}

// Faults from a FaultFunc (an offset regression, a failed role) join the
// layer they name, or a layer of their own; a down fault makes the
// platform down.
func TestStatusFaultSources(t *testing.T) {
	f := newFixture(t, seeded(t, newMemory), APIConfig{},
		StatusFunc(func(context.Context) (LayerStatus, error) {
			return LayerStatus{Layer: "archive", LagRecords: 0}, nil
		}))
	f.api.AddFaultSource(func(context.Context) ([]Fault, error) {
		return []Fault{
			{Layer: "archive", Code: FaultOffsetRegression, State: StateDown, Message: "events/3: stored offset 1200, broker log ends at 40",
				Details: map[string]any{"topic": "events", "partition": 3, "stored": 1200, "broker_end": 40}},
			{Layer: "generate", Code: "role_failed", State: StateDegraded, Message: "generator stopped"},
		}, nil
	})
	f.api.AddFaultSource(func(context.Context) ([]Fault, error) { return nil, errors.New("admin client closed") })
	st := statusOf(t, f.h)
	if st.State != StateDown {
		t.Fatalf("platform state %s, want down", st.State)
	}
	a := layerOf(t, st, "archive")
	if a.State != StateDown || len(a.Reasons) != 1 || a.Reasons[0].Details["partition"] != float64(3) {
		t.Errorf("archive %+v", a)
	}
	if g := layerOf(t, st, "generate"); g.State != StateDegraded {
		t.Errorf("generate %+v", g)
	}
	if s := layerOf(t, st, "status"); s.State != StateDegraded || !strings.Contains(s.Reasons[0].Message, "admin client closed") {
		t.Errorf("failing fault source %+v", s)
	}
}

// /metrics exports the evaluation /v1/status answers with: the same lag and
// the same state per layer.
func TestStatusMetricsAgree(t *testing.T) {
	f := newFixture(t, seeded(t, newMemory), APIConfig{Thresholds: StatusThresholds{MaxLagRecords: 100}},
		StatusFunc(func(context.Context) (LayerStatus, error) {
			return LayerStatus{Layer: "speed", LagRecords: 4242, LagSeconds: 7.5}, nil
		}))
	st := statusOf(t, f.h)
	m := get(t, f.h, "/metrics").body
	for _, want := range []string{
		`lambdarec_status_lag_records{layer="speed"} 4242`,
		`lambdarec_status_lag_seconds{layer="speed"} 7.5`,
		`lambdarec_status_layer_state{layer="speed",state="degraded"} 1`,
		`lambdarec_status_layer_state{layer="speed",state="ok"} 0`,
		`lambdarec_status_layer_state{layer="serving_store",state="ok"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if l := layerOf(t, st, "speed"); l.LagRecords != 4242 || l.State != StateDegraded {
		t.Errorf("status speed %+v", l)
	}
}

// With the serving store down, /readyz is 503 naming it, every read is an
// honest 503 (not 200 with empty items), and /v1/status says the store is
// down.
func TestReadyzStoreDown(t *testing.T) {
	st := store.NewMemory()
	f := newFixture(t, st, APIConfig{}) // no batch published: reads would be empty
	if r := get(t, f.h, "/readyz"); r.status != http.StatusOK || !strings.Contains(r.body, `"store":"ok"`) {
		t.Fatalf("/readyz with the store up: %d %s", r.status, r.body)
	}
	if r := get(t, f.h, "/v1/items/i1/similar"); r.status != http.StatusOK {
		t.Fatalf("similar with the store up: %d %s", r.status, r.body)
	}
	_ = st.Close()
	f.api.health.mu.Lock()
	f.api.health.at = time.Time{} // do not wait out the check's one-second reuse
	f.api.health.mu.Unlock()
	storeDown(t, f)
}

// storeGoesDown serves from st (closed when the test ends), checks that
// the API answers while it is up, takes it down with down, waits out the
// last good health check and checks the answers (storeDown).
func storeGoesDown(t *testing.T, st store.Store, down func()) {
	t.Helper()
	t.Cleanup(func() { _ = st.Close() })
	f := newFixture(t, st, APIConfig{StoreTimeout: 3 * time.Second})
	// No batch yet: the store answers "no batch", so similar items are an
	// empty 200, which the store's caches could go on serving.
	if r := get(t, f.h, "/v1/items/i1/similar"); r.status != 200 {
		t.Fatalf("similar with the store up: %d %s", r.status, r.body)
	}
	if r := get(t, f.h, "/readyz"); r.status != 200 {
		t.Fatalf("/readyz with the store up: %d %s", r.status, r.body)
	}
	down()
	time.Sleep(storeHealthTTL + 100*time.Millisecond) // the last good check expires
	storeDown(t, f)
}

// storeDown checks the answers of an API whose store does not answer.
func storeDown(t *testing.T, f *fixture) {
	t.Helper()
	r := get(t, f.h, "/readyz")
	e := wantError(t, r, http.StatusServiceUnavailable, CodeNotReady)
	if !strings.Contains(e.Message, "store: ") {
		t.Errorf("/readyz does not name the store: %s", e.Message)
	}
	for _, target := range []string{"/v1/items/i1/similar", "/v1/recommendations?user_id=u1", "/v1/recommendations?session_id=s-new"} {
		r := get(t, f.h, target)
		wantError(t, r, http.StatusServiceUnavailable, CodeStoreUnavailable)
		if r.header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", target)
		}
	}
	s := statusOf(t, f.h)
	if l := layerOf(t, s, StoreLayer); s.State != StateDown || l.State != StateDown || len(l.Reasons) == 0 || l.Reasons[0].Code != FaultStoreUnreachable {
		t.Errorf("status with the store down: %+v", s)
	}
}

func newMemory(testing.TB) store.Store { return store.NewMemory() }

// A status read that times out (an overloaded process, a busy broker) shows
// the layer as it last reported, degraded with status_slow and its lag
// judged as usual, not down; after StatusSlowGrace without an answer, or on
// any other error, the layer is unreachable and down.
func TestStatusSlowSource(t *testing.T) {
	var mode atomic.Int32 // 0 answers, 1 blocks until its time runs out, 2 fails at once
	src := StatusFunc(func(ctx context.Context) (LayerStatus, error) {
		switch mode.Load() {
		case 1:
			<-ctx.Done()
			return LayerStatus{Layer: "archive", LagRecords: -1, LagSeconds: -1}, fmt.Errorf("end offsets: %w", ctx.Err())
		case 2:
			return LayerStatus{Layer: "archive", LagRecords: -1, LagSeconds: -1}, errors.New("connection refused")
		}
		return LayerStatus{Layer: "archive", LastUpdate: testNow.Add(-3 * time.Second), LagRecords: 500, LagSeconds: 3,
			Details: map[string]any{"snapshot_id": 7}}, nil
	})
	th := StatusThresholds{MaxLagRecords: 100, MaxLagTime: time.Minute}
	f := newFixture(t, seeded(t, newMemory), APIConfig{Thresholds: th, StatusTimeout: 50 * time.Millisecond}, src)
	now := testNow
	f.api.now = func() time.Time { return now }
	read := func() LayerReport {
		t.Helper()
		f.api.invalidateStatus()
		return layerOf(t, statusOf(t, f.h), "archive")
	}
	if l := read(); l.State != StateDegraded || strings.Join(reasonCodes(l), ",") != "lag_records/degraded" {
		t.Fatalf("answering: %s %v", l.State, reasonCodes(l))
	}

	mode.Store(1)
	now = testNow.Add(10 * time.Second)
	l := read()
	if l.State != StateDegraded || strings.Join(reasonCodes(l), ",") != "status_slow/degraded,lag_records/degraded" {
		t.Fatalf("slow: %s %v", l.State, reasonCodes(l))
	}
	if l.LagRecords != 500 || l.LagSeconds != 13 || l.Error != "" || l.Details["snapshot_id"] != float64(7) || l.Details["status_as_of"] == nil {
		t.Errorf("slow: the last report is not shown: %+v", l)
	}
	if m := l.Reasons[0].Message; !strings.Contains(m, "50ms") || !strings.Contains(m, "10s ago") || !strings.Contains(m, "deadline exceeded") {
		t.Errorf("slow reason %q does not say what timed out and how old the report is", m)
	}

	now = testNow.Add(StatusSlowGrace + time.Second)
	if l := read(); l.State != StateDown || strings.Join(reasonCodes(l), ",") != "unreachable/down" {
		t.Fatalf("slow past the grace: %s %v", l.State, reasonCodes(l))
	}

	// Answering again, then failing otherwise than by time: down at once.
	mode.Store(0)
	read()
	mode.Store(2)
	now = now.Add(time.Second)
	if l := read(); l.State != StateDown || strings.Join(reasonCodes(l), ",") != "unreachable/down" || !strings.Contains(l.Error, "connection refused") {
		t.Fatalf("failing: %s %v %q", l.State, reasonCodes(l), l.Error)
	}
	// A layer that never answered is down when it times out.
	g := newFixture(t, seeded(t, newMemory), APIConfig{StatusTimeout: 50 * time.Millisecond}, src)
	mode.Store(1)
	if l := layerOf(t, statusOf(t, g.h), "archive"); l.State != StateDown {
		t.Fatalf("never answered, slow: %s %v", l.State, reasonCodes(l))
	}
}
