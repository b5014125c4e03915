package batch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a batch run, the result label of lambdarec_batch_runs_total.
const (
	// ResultSuccess: a new batch view was computed and published.
	ResultSuccess = "success"
	// ResultUpToDate: the current batch already covered the snapshot.
	ResultUpToDate = "up_to_date"
	// ResultNoEvents: nothing was archived yet.
	ResultNoEvents = "no_events"
	// ResultError: the run failed; the previous view stays current.
	ResultError = "error"
	// ResultCanceled: the run was stopped (shutdown).
	ResultCanceled = "canceled"
)

// RunMetrics are the metrics of the batch runs a Scheduler makes. Build them
// with NewRunMetrics and pass them to Scheduler.SetMetrics.
type RunMetrics struct {
	runs        *prometheus.CounterVec
	duration    prometheus.Histogram
	lastSuccess prometheus.Gauge
	lastEnd     prometheus.Gauge
}

// NewRunMetrics registers the batch-run metrics on reg:
// lambdarec_batch_runs_total{result}, lambdarec_batch_run_duration_seconds,
// lambdarec_batch_last_success_timestamp_seconds (a run that ended with its
// view current: success or up_to_date) and
// lambdarec_batch_last_run_timestamp_seconds (any result).
func NewRunMetrics(reg prometheus.Registerer) (*RunMetrics, error) {
	m := &RunMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdarec_batch_runs_total",
			Help: "Batch runs by result: success (a new view published), up_to_date, no_events, error, canceled.",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lambdarec_batch_run_duration_seconds",
			Help:    "Duration of batch runs, whatever their result.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 16), // 50 ms … ~27 min
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lambdarec_batch_last_success_timestamp_seconds",
			Help: "Unix time of the end of the last batch run that left a current view (success or up_to_date); 0 before the first.",
		}),
		lastEnd: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lambdarec_batch_last_run_timestamp_seconds",
			Help: "Unix time of the end of the last batch run, whatever its result; 0 before the first.",
		}),
	}
	for _, r := range []string{ResultSuccess, ResultUpToDate, ResultNoEvents, ResultError, ResultCanceled} {
		m.runs.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{m.runs, m.duration, m.lastSuccess, m.lastEnd} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register batch run metrics: %w", err)
		}
	}
	return m, nil
}

// RunResult classifies the outcome of Runner.Run.
func RunResult(res *Result, err error) string {
	switch {
	case errors.Is(err, ErrNoEvents):
		return ResultNoEvents
	case errors.Is(err, context.Canceled):
		return ResultCanceled
	case err != nil:
		return ResultError
	case res != nil && res.UpToDate:
		return ResultUpToDate
	}
	return ResultSuccess
}

// observe records a run that took d and ended at end.
func (m *RunMetrics) observe(res *Result, err error, d time.Duration, end time.Time) {
	if m == nil {
		return
	}
	r := RunResult(res, err)
	m.runs.WithLabelValues(r).Inc()
	m.duration.Observe(d.Seconds())
	ts := float64(end.UnixNano()) / 1e9
	m.lastEnd.Set(ts)
	if r == ResultSuccess || r == ResultUpToDate {
		m.lastSuccess.Set(ts)
	}
}
