package collector

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/serving"
)

// FuzzHandler throws arbitrary bodies and content types at POST /v1/events,
// through the whole server, with valid events produced to a real embedded
// broker. It never panics, and answers 202 or a JSON error: never a 5xx but
// 503 "unavailable", which needs Kafka to fail.
func FuzzHandler(f *testing.F) {
	const maxEvents = 20
	e := newTestEnv(f, func(c *Config) {
		c.MaxBodyBytes = 16 << 10
		c.MaxBatchEvents = maxEvents
		c.ProduceTimeout = 5 * time.Second
	})
	h := e.srv.Handler()
	evs := testEvents(maxEvents + 1)
	bad := testEvents(3)
	bad[1].UserId = ""
	for _, s := range []struct {
		ct   string
		body []byte
	}{
		{"application/json", jsonEvent(f, evs[0])},
		{"application/json; charset=utf-8", jsonArray(f, evs[:3])},
		{"application/json", []byte(`{"events":` + string(jsonArray(f, evs[:2])) + `}`)},
		{"application/json", jsonArray(f, bad)},
		{"application/json", jsonArray(f, evs)},
		{"application/json", []byte(`[]`)},
		{"application/json", []byte(`[{"event_id":`)},
		{"application/x-protobuf", protoEvent(f, evs[1])},
		{batchContentType, protoBatch(f, evs[:4])},
		{batchContentType, protoBatch(f, bad)},
		{"application/protobuf; messageType=lambdarec.v1.UserInteraction", []byte{0x0a, 0x01}},
		{"text/plain", []byte("hello")},
	} {
		f.Add(s.ct, s.body)
	}
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		if rec.Code == http.StatusAccepted {
			var got struct{ Accepted int }
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got.Accepted < 1 || got.Accepted > maxEvents {
				t.Fatalf("202 with body %q (%v)", rec.Body, err)
			}
			// What was accepted decodes and validates on its own.
			fm, batch, rej := parseContentType(contentType)
			if rej != nil {
				t.Fatalf("202 for Content-Type %q: %v", contentType, rej.err)
			}
			d, rej := decodeBody(fm, batch, body, testNow, maxEvents)
			if rej != nil || len(d.events) != got.Accepted {
				t.Fatalf("202 {accepted: %d} but the body decodes to %d events (%v)", got.Accepted, len(d.events), rej)
			}
			return
		}
		var env struct {
			Error serving.Error `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || env.Error.Message == "" {
			t.Fatalf("status %d with body %q is not a JSON error (%v)", rec.Code, rec.Body, err)
		}
		want := map[int][]string{
			http.StatusBadRequest:            {CodeMalformed, CodeInvalidEvent, CodeEmptyBatch},
			http.StatusRequestEntityTooLarge: {CodeTooLarge, CodeTooManyEvents},
			http.StatusUnsupportedMediaType:  {CodeUnsupportedMediaType},
			http.StatusServiceUnavailable:    {CodeUnavailable},
		}[rec.Code]
		if !slices.Contains(want, env.Error.Code) {
			t.Fatalf("status %d with code %q: %s", rec.Code, env.Error.Code, rec.Body)
		}
		if env.Error.Code == CodeInvalidEvent && env.Error.Field == "" {
			t.Fatalf("invalid_event without a field: %s", rec.Body)
		}
	})
}
