package serving

import (
	"fmt"
	"net/http"
	"path"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DurationBuckets are the request-duration histogram buckets, in seconds:
// from half a millisecond (a cached recommendation) to ten seconds (a produce
// waiting out its timeout).
var DurationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

type httpMetrics struct {
	inFlight prometheus.Gauge
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lambdarec_http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lambdarec_http_request_duration_seconds",
			Help:    "Duration of HTTP requests by route pattern, method and status code.",
			Buckets: DurationBuckets,
		}, []string{"handler", "method", "code"}),
	}
	for _, c := range []prometheus.Collector{m.inFlight, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register http metrics: %w", err)
		}
	}
	return m, nil
}

// serveHTTP routes r and records it. The route label is the matched pattern,
// so label values stay bounded whatever paths clients send.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.metrics.inFlight.Inc()
	rw := &responseWriter{ResponseWriter: w, req: r}
	defer func() {
		p := recover()
		if p != nil && p != http.ErrAbortHandler {
			s.log.Error("http handler panicked", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if !rw.wroteHeader {
				WriteError(rw, http.StatusInternalServerError, Error{Code: CodeInternal, Message: "internal error"})
			}
		}
		s.metrics.inFlight.Dec()
		handler := r.Pattern
		if handler == "" {
			handler = "unmatched"
		}
		status := rw.status
		if status == 0 {
			status = http.StatusOK
		}
		s.metrics.duration.WithLabelValues(handler, methodLabel(r.Method), strconv.Itoa(status)).Observe(time.Since(start).Seconds())
		if p == http.ErrAbortHandler {
			panic(p)
		}
	}()
	if !cleanPath(r.URL.EscapedPath()) {
		// http.ServeMux would answer an HTML redirect to the cleaned
		// path; no endpoint lives at an unclean one.
		WriteError(rw, http.StatusNotFound, Error{Code: CodeNotFound, Message: "no endpoint at " + r.URL.Path})
		return
	}
	s.mux.ServeHTTP(rw, r)
}

// cleanPath reports whether p is what http.ServeMux routes without a
// redirect: rooted, with no empty, "." or ".." segment (a trailing slash is
// kept by the mux, so it is clean).
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return p == "" // the mux treats an empty path as "/"
	}
	c := path.Clean(p)
	if p[len(p)-1] == '/' && c != "/" {
		c += "/"
	}
	return c == p
}

// methodLabel bounds the method label to the standard methods.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// responseWriter records the status, and turns the plain-text errors that
// http.ServeMux writes itself (404, 405, 400 for unroutable requests) into
// the JSON error envelope. Responses of mounted handlers pass unchanged.
type responseWriter struct {
	http.ResponseWriter
	req         *http.Request
	status      int
	wroteHeader bool
	swallow     bool // the body of a rewritten mux error is dropped
}

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader, w.status = true, code
	if w.req.Pattern == "" && code >= 400 {
		// Routed nowhere: the mux itself is answering.
		w.swallow = true
		h := w.Header()
		h.Del("Content-Length")
		WriteJSON(w.ResponseWriter, code, errorBody{Error: Error{Code: muxErrorCode(code), Message: muxErrorMessage(code, w.req)}})
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Flush sends what was written so far, for streaming handlers (the RPC
// API's reflection and health watch streams).
func (w *responseWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok && !w.swallow {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func muxErrorCode(code int) string {
	switch code {
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusMethodNotAllowed:
		return CodeMethodNotAllowed
	case http.StatusBadRequest:
		return "bad_request"
	}
	return "http_" + strconv.Itoa(code)
}

func muxErrorMessage(code int, r *http.Request) string {
	switch code {
	case http.StatusNotFound:
		return "no endpoint at " + r.URL.Path
	case http.StatusMethodNotAllowed:
		return r.Method + " is not allowed on " + r.URL.Path
	}
	return http.StatusText(code)
}
