package collector

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lambdarec/lambdarec/serving"
)

// metrics of the collector. Request durations are recorded by the server
// (lambdarec_http_request_duration_seconds{handler="/v1/events"}).
type metrics struct {
	accepted         prometheus.Counter
	rejectedEvents   *prometheus.CounterVec
	rejectedRequests *prometheus.CounterVec
	produceErrors    prometheus.Counter
	produceDuration  prometheus.Histogram
	requestEvents    prometheus.Histogram
}

// rejectionCodes are every reason label value, exported from the start so
// that rates work before the first rejection.
var rejectionCodes = []string{
	CodeMalformed, CodeInvalidEvent, CodeEmptyBatch, CodeTooLarge, CodeTooManyEvents,
	CodeUnsupportedMediaType, CodeMethodNotAllowed, CodeUnavailable, CodeOverloaded,
}

// registerBudget exports what the budget holds.
func (m *metrics) registerBudget(reg prometheus.Registerer, b *budget) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lambdarec_collector_inflight_requests",
			Help: "POST /v1/events requests being handled (bounded by serve.max_inflight_requests).",
		}, func() float64 { return float64(b.reqs.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lambdarec_collector_inflight_bytes",
			Help: "Bytes of request bodies reserved by requests being handled (bounded by serve.max_inflight_bytes).",
		}, func() float64 { return float64(b.bytes.Load()) }),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register collector metrics: %w", err)
		}
	}
	return nil
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lambdarec_collector_events_accepted_total",
			Help: "Events acknowledged by Kafka and answered with 202.",
		}),
		rejectedEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdarec_collector_events_rejected_total",
			Help: "Events in refused requests, by reason code; a request whose events could not be counted counts as one.",
		}, []string{"reason"}),
		rejectedRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdarec_collector_requests_rejected_total",
			Help: "Refused POST /v1/events requests, by reason code.",
		}, []string{"reason"}),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lambdarec_collector_produce_errors_total",
			Help: "Requests whose records Kafka did not acknowledge (failed or timed out); each was answered 503.",
		}),
		produceDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lambdarec_collector_produce_duration_seconds",
			Help:    "Time from producing a request's records to Kafka's acknowledgement of all of them.",
			Buckets: serving.DurationBuckets,
		}),
		requestEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lambdarec_collector_request_events",
			Help:    "Events per accepted request.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 7), // 1 … 4096
		}),
	}
	for _, code := range rejectionCodes {
		m.rejectedEvents.WithLabelValues(code)
		m.rejectedRequests.WithLabelValues(code)
	}
	for _, c := range []prometheus.Collector{m.accepted, m.rejectedEvents, m.rejectedRequests, m.produceErrors, m.produceDuration, m.requestEvents} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register collector metrics: %w", err)
		}
	}
	return m, nil
}
