// Package ui owns lambdarec's live status page at /ui: a plain HTML/JS/CSS
// page embedded in the binary (no build step), and the in-process ring of
// status samples it draws from, served as JSON at /ui/api/samples.
//
// The sampler reads what the serving process knows: the /v1/status
// evaluation (per-layer state, lag, staleness, the batch served) and the
// counters of the Prometheus registry the process serves at /metrics
// (events accepted by the collector, records archived and processed by the
// speed layer when those roles run in the same process, as in `lambdarec
// dev`; dead letters and rejections by reason). Throughput is the rate of
// those counters between two samples; a counter the process does not have
// is absent, not zero. Batch runs are the distinct batches seen by the
// sampler (and the one served when it started), newest first.
//
// The page's static files are open; /ui/api/samples needs the admin scope
// when API keys are on (the route is not in auth.DefaultPolicy's open
// list), and the explorer calls /v1/recommendations (scope read). The page
// sends the key the user types into it as `Authorization: Bearer KEY`,
// keeping it in the tab's sessionStorage only.
package ui

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lambdarec/lambdarec/serving"
)

// Routes of the page, as mounted by Mount.
const (
	RoutePage    = "GET /ui"
	RouteAsset   = "GET /ui/{file}"
	RouteSamples = "GET /ui/api/samples"
)

//go:embed static
var static embed.FS

// Config configures a Sampler. Zero values take the defaults.
type Config struct {
	// Interval between two samples. Default: 5s.
	Interval time.Duration
	// Samples kept in the ring. Default: 120 (10 minutes at 5s).
	Samples int
	// Batches is how many batch runs are kept. Default: 10.
	Batches int
}

// Deps are what a Sampler reads.
type Deps struct {
	// Status evaluates the platform's status (serving.API.Status). Required.
	Status func(ctx context.Context) serving.Status
	// Gatherer is the registry served at /metrics. Nil: no throughput and
	// no dead letters.
	Gatherer prometheus.Gatherer
	// Log receives the sampler's logs. Default: discard.
	Log *slog.Logger
}

// Sampler keeps the last samples of the platform's status. Build it with
// New, run it with Run, mount it with Mount.
type Sampler struct {
	cfg  Config
	deps Deps

	mu      sync.Mutex
	ring    []Sample
	next    int // where the next sample goes
	full    bool
	batches []BatchRun
	prev    map[string]float64 // counter values of the previous sample
	prevAt  time.Time
	dead    DeadLetters
	last    *serving.Status
}

// Sample is the platform at one moment.
type Sample struct {
	At    time.Time `json:"at"`
	State string    `json:"state"`
	// Layers maps each layer of /v1/status to its figures.
	Layers map[string]LayerSample `json:"layers"`
	// Rates are per-second rates of the throughput counters since the
	// previous sample (collector, archive, speed); a counter the process
	// does not have is absent.
	Rates map[string]float64 `json:"rates"`
}

// LayerSample is one layer's figures in a Sample; -1 and null as in
// /v1/status.
type LayerSample struct {
	State            string   `json:"state"`
	LagRecords       int64    `json:"lag_records"`
	LagSeconds       float64  `json:"lag_seconds"`
	StalenessSeconds *float64 `json:"staleness_seconds"`
}

// BatchRun is a batch seen served.
type BatchRun struct {
	BatchID            string    `json:"batch_id"`
	CreatedAt          time.Time `json:"created_at"`
	SourceMaxEventTime time.Time `json:"source_max_event_time"`
	// FirstSeen is when the sampler first saw it served.
	FirstSeen time.Time `json:"first_seen"`
	// Events and DurationMS come from the batch layer's status, when it
	// reports this batch.
	Events     *int64 `json:"events,omitempty"`
	DurationMS *int64 `json:"duration_ms,omitempty"`
}

// DeadLetters are the records the platform refused or dead-lettered, by
// stage and reason, as its counters say (totals since the process started).
type DeadLetters struct {
	// Collector: events refused by POST /v1/events, by reason code.
	Collector map[string]float64 `json:"collector"`
	// Archive: records the archive wrote to the dead-letter topic (the
	// archive counts them without a reason; `lambdarec dlq` reads them).
	Archive *float64 `json:"archive,omitempty"`
	// Speed: invalid records the speed layer skipped.
	Speed *float64 `json:"speed,omitempty"`
}

// Samples is the answer of GET /ui/api/samples.
type Samples struct {
	IntervalSeconds float64 `json:"interval_seconds"`
	// Samples are the kept samples, oldest first.
	Samples     []Sample        `json:"samples"`
	Batches     []BatchRun      `json:"batches"`
	DeadLetters DeadLetters     `json:"dead_letters"`
	Status      *serving.Status `json:"status"`
}

// New returns a sampler.
func New(cfg Config, deps Deps) (*Sampler, error) {
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Samples == 0 {
		cfg.Samples = 120
	}
	if cfg.Batches == 0 {
		cfg.Batches = 10
	}
	switch {
	case cfg.Interval < 0 || cfg.Samples < 0 || cfg.Batches < 0:
		return nil, errors.New("ui: interval, samples and batches must be positive")
	case deps.Status == nil:
		return nil, errors.New("ui: a status function is required")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	return &Sampler{cfg: cfg, deps: deps, ring: make([]Sample, cfg.Samples),
		dead: DeadLetters{Collector: map[string]float64{}}}, nil
}

// Run samples now and then every Interval until ctx ends.
func (s *Sampler) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		s.sample(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Throughput counters: name → metric and label filter.
var rateCounters = []struct {
	name, metric, label, value string
}{
	{"collector", "lambdarec_collector_events_accepted_total", "", ""},
	{"archive", "lambdarec_archive_records_total", "outcome", "archived"},
	{"speed", "lambdarec_speed_records_total", "", ""},
}

func (s *Sampler) sample(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, max(s.cfg.Interval, time.Second))
	st := s.deps.Status(sctx)
	cancel()
	now := time.Now()
	smp := Sample{At: now, State: st.State, Layers: make(map[string]LayerSample, len(st.Layers)), Rates: map[string]float64{}}
	for _, l := range st.Layers {
		smp.Layers[l.Layer] = LayerSample{State: l.State, LagRecords: l.LagRecords, LagSeconds: l.LagSeconds, StalenessSeconds: l.StalenessSeconds}
	}
	counters, dead := s.gather()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prev != nil {
		dt := now.Sub(s.prevAt).Seconds()
		for name, v := range counters {
			if p, ok := s.prev[name]; ok && dt > 0 {
				smp.Rates[name] = max(0, v-p) / dt
			}
		}
	}
	s.prev, s.prevAt = counters, now
	s.dead = dead
	s.last = &st
	s.ring[s.next] = smp
	s.next = (s.next + 1) % len(s.ring)
	s.full = s.full || s.next == 0
	if st.Batch != nil && (len(s.batches) == 0 || s.batches[0].BatchID != st.Batch.BatchID) {
		run := BatchRun{BatchID: st.Batch.BatchID, CreatedAt: st.Batch.CreatedAt, SourceMaxEventTime: st.Batch.SourceMaxEventTime, FirstSeen: now}
		s.batches = append([]BatchRun{run}, s.batches[:min(len(s.batches), s.cfg.Batches-1)]...)
	}
	for _, l := range st.Layers {
		if l.Layer != serving.BatchLayer || len(s.batches) == 0 || l.Details["batch_id"] != s.batches[0].BatchID {
			continue
		}
		if n, ok := asInt(l.Details["events"]); ok {
			s.batches[0].Events = &n
		}
		if n, ok := asInt(l.Details["duration_ms"]); ok {
			s.batches[0].DurationMS = &n
		}
	}
}

func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		return int64(n), true
	}
	return 0, false
}

// gather reads the throughput counters and the dead letters.
func (s *Sampler) gather() (map[string]float64, DeadLetters) {
	counters := map[string]float64{}
	dead := DeadLetters{Collector: map[string]float64{}}
	if s.deps.Gatherer == nil {
		return counters, dead
	}
	mfs, err := s.deps.Gatherer.Gather()
	if err != nil {
		s.deps.Log.Warn("ui sampler gather metrics", "err", err) // partial results are still used
	}
	for _, mf := range mfs {
		name := mf.GetName()
		for _, rc := range rateCounters {
			if name == rc.metric {
				counters[rc.name] += sum(mf, rc.label, rc.value)
			}
		}
		switch name {
		case "lambdarec_collector_events_rejected_total":
			for _, m := range mf.GetMetric() {
				dead.Collector[label(m, "reason")] += m.GetCounter().GetValue()
			}
		case "lambdarec_archive_records_total":
			v := sum(mf, "outcome", "dead_lettered")
			dead.Archive = &v
		case "lambdarec_speed_invalid_records_total":
			v := sum(mf, "", "")
			dead.Speed = &v
		}
	}
	return counters, dead
}

// sum adds the counter values of mf whose label name has value (all when
// name is empty).
func sum(mf *dto.MetricFamily, name, value string) float64 {
	var v float64
	for _, m := range mf.GetMetric() {
		if name == "" || label(m, name) == value {
			v += m.GetCounter().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return v
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// Snapshot returns the kept samples, oldest first, with the batch runs, the
// dead letters and the last status.
func (s *Sampler) Snapshot() Samples {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Samples{IntervalSeconds: s.cfg.Interval.Seconds(), Batches: append([]BatchRun{}, s.batches...), DeadLetters: s.dead, Status: s.last}
	if s.full {
		out.Samples = append(out.Samples, s.ring[s.next:]...)
	}
	out.Samples = append(out.Samples, s.ring[:s.next]...)
	if out.Samples == nil {
		out.Samples = []Sample{}
	}
	return out
}

// Mount serves the page and the samples on srv.
func (s *Sampler) Mount(srv *serving.Server) {
	files, _ := fs.Sub(static, "static")
	assets := http.FileServerFS(files)
	srv.Handle(RoutePage, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, files, "index.html")
	}))
	srv.Handle(RouteAsset, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		if name == "index.html" || name == "" {
			serving.WriteError(w, http.StatusNotFound, serving.Error{Code: serving.CodeNotFound, Message: "no endpoint at " + r.URL.Path})
			return
		}
		if _, err := fs.Stat(files, name); err != nil {
			serving.WriteError(w, http.StatusNotFound, serving.Error{Code: serving.CodeNotFound, Message: "no endpoint at " + r.URL.Path})
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + name
		assets.ServeHTTP(w, r2)
	}))
	srv.Handle(RouteSamples, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		serving.WriteJSON(w, http.StatusOK, s.Snapshot())
	}))
}
