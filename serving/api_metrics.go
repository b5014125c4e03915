package serving

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// apiMetrics are the read API's own metrics. Request counts and latencies by
// route and status are recorded by the server
// (lambdarec_http_request_duration_seconds{handler="GET /v1/recommendations",code="200"}).
type apiMetrics struct {
	// items counts recommended items by source; answers counts answers by
	// the source of their first item ("none" for an empty answer).
	items   map[string]prometheus.Counter
	answers map[string]prometheus.Counter
	itemsV  *prometheus.CounterVec
	answerV *prometheus.CounterVec
	// answerSize is the number of items per answer.
	answerSize prometheus.Histogram

	// readScores counts read-time scorings by result (readResults);
	// readScoreSeconds is how long the scorer took.
	readScores       map[string]prometheus.Counter
	readScoresV      *prometheus.CounterVec
	readScoreSeconds prometheus.Histogram

	badRequests prometheus.Counter
	storeErrors *prometheus.CounterVec
}

var answerSources = []string{SourceSpeed, SourceBatch, SourcePopular}

func newAPIMetrics() *apiMetrics {
	m := &apiMetrics{
		itemsV: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdarec_recommendation_items_total",
			Help: "Items answered by GET /v1/recommendations, by source (speed, batch, popular).",
		}, []string{"source"}),
		answerV: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdarec_recommendation_answers_total",
			Help: "Answers of GET /v1/recommendations, by the source of their first item (none: empty answer).",
		}, []string{"source"}),
		answerSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lambdarec_recommendation_answer_items",
			Help:    "Items per answer of GET /v1/recommendations.",
			Buckets: []float64{0, 1, 5, 10, 20, 50, 100},
		}),
		badRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lambdarec_api_bad_requests_total",
			Help: "Read API requests refused with 400 for their parameters.",
		}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdarec_api_store_errors_total",
			Help: "Serving store reads of the read API that failed (answered 503), by operation.",
		}, []string{"op"}),
		readScoresV: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdarec_serve_read_scores_total",
			Help: "Sessions' real-time recommendations scored at read time (result read) or answered from the stored view instead (fallback_not_ready, fallback_error, fallback_timeout; no_inputs: a view stored without its explanation; fallback_no_items: a failed scoring of a view stored without items, answered without speed items).",
		}, []string{"result"}),
		readScoreSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lambdarec_serve_read_score_seconds",
			Help:    "Time the speed layer took to score a session at read time, failures included.",
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25},
		}),
		readScores: map[string]prometheus.Counter{},
		items:      map[string]prometheus.Counter{},
		answers:    map[string]prometheus.Counter{},
	}
	for _, s := range answerSources {
		m.items[s] = m.itemsV.WithLabelValues(s)
		m.answers[s] = m.answerV.WithLabelValues(s)
	}
	m.answers["none"] = m.answerV.WithLabelValues("none")
	for _, r := range readResults {
		m.readScores[r] = m.readScoresV.WithLabelValues(r)
	}
	for _, op := range []string{"current_batch", "session", "user_recs", "user_items", "popular", "similar"} {
		m.storeErrors.WithLabelValues(op)
	}
	return m
}

func (m *apiMetrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.itemsV, m.answerV, m.answerSize, m.badRequests, m.storeErrors, m.readScoresV, m.readScoreSeconds} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register api metrics: %w", err)
		}
	}
	return nil
}

// observeAnswer counts an answer and its items by source. Items come grouped
// by source, so each group is one Add.
func (m *apiMetrics) observeAnswer(items []Item) {
	m.answerSize.Observe(float64(len(items)))
	if len(items) == 0 {
		m.answers["none"].Inc()
		return
	}
	m.answers[items[0].Source].Inc()
	start := 0
	for i := 1; i <= len(items); i++ {
		if i == len(items) || items[i].Source != items[start].Source {
			m.items[items[start].Source].Add(float64(i - start))
			start = i
		}
	}
}
