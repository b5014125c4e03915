package collector

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
)

// BenchmarkDecode is the collector's per-event CPU cost before Kafka:
// splitting the body, decoding every event and validating it (decodeBody).
// ns/event and allocs/event divide by the events per request.
func BenchmarkDecode(b *testing.B) {
	for _, bc := range []struct {
		name       string
		f          format
		protoBatch bool
		n          int
		body       func(b *testing.B) []byte
	}{
		{"json/single", formatJSON, false, 1, func(b *testing.B) []byte { return jsonEvent(b, testEvent(2)) }},
		{"json/batch100", formatJSON, false, 100, func(b *testing.B) []byte { return jsonArray(b, testEvents(100)) }},
		{"protobuf/single", formatProtobuf, false, 1, func(b *testing.B) []byte { return protoEvent(b, testEvent(2)) }},
		{"protobuf/batch100", formatProtobuf, true, 100, func(b *testing.B) []byte { return protoBatch(b, testEvents(100)) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := bc.body(b)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			perEvent := eventMetrics(b, bc.n)
			for b.Loop() {
				d, rej := decodeBody(bc.f, bc.protoBatch, body, testNow, 1000)
				if rej != nil || len(d.events) != bc.n {
					b.Fatalf("decode: %v, %d events", rej, len(d.events))
				}
			}
			perEvent()
		})
	}
}

// BenchmarkHandler is a whole POST /v1/events of 100 JSON events, through the
// server, until the embedded broker (over TCP) acknowledged them.
func BenchmarkHandler(b *testing.B) {
	e := newTestEnv(b, func(c *Config) { c.MaxBodyBytes = 1 << 20; c.MaxBatchEvents = 1000 })
	h := e.srv.Handler()
	const n = 100
	body := jsonArray(b, testEvents(n))
	// allocs/op includes the in-process broker's allocations.
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
}

// eventMetrics starts counting allocations; the returned func reports
// ns/event and allocs/event for n events per iteration.
func eventMetrics(b *testing.B, n int) func() {
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	return func() {
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		events := float64(b.N * n)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/events, "ns/event")
		b.ReportMetric(float64(after.Mallocs-before.Mallocs)/events, "allocs/event")
	}
}
