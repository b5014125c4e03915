package collector

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/schemas"
)

// TestAccept posts every accepted body form and checks the records in the
// topic: one per event, keyed by session_id, whose value decodes, validates
// and equals the posted event.
func TestAccept(t *testing.T) {
	evs := testEvents(7)
	cases := []struct {
		name, contentType string
		body              func(t *testing.T) []byte
		events            []*schemas.UserInteraction
	}{
		{"json single", "application/json", func(t *testing.T) []byte { return jsonEvent(t, evs[2]) }, evs[2:3]},
		{"json single with charset", "application/json; charset=UTF-8", func(t *testing.T) []byte { return jsonEvent(t, evs[3]) }, evs[3:4]},
		{"json array", "application/json", func(t *testing.T) []byte { return jsonArray(t, evs) }, evs},
		{"json array of one", "application/json", func(t *testing.T) []byte { return jsonArray(t, evs[:1]) }, evs[:1]},
		{"json wrapper", "application/json", func(t *testing.T) []byte {
			return []byte(` { "events" : ` + string(jsonArray(t, evs)) + "}\n")
		}, evs},
		{"json camelCase names", "application/json", func(t *testing.T) []byte {
			return []byte(`{"eventId":"e-9","timestamp":"2026-11-25T11:00:00Z","userId":"u","sessionId":"s-9","pageView":{"itemId":"i-1"}}`)
		}, nil},
		{"protobuf single", "application/x-protobuf", func(t *testing.T) []byte { return protoEvent(t, evs[4]) }, evs[4:5]},
		{"protobuf single, named", "application/protobuf; messageType=lambdarec.v1.UserInteraction", func(t *testing.T) []byte { return protoEvent(t, evs[5]) }, evs[5:6]},
		{"protobuf batch", batchContentType, func(t *testing.T) []byte { return protoBatch(t, evs) }, evs},
	}
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				acceptCase(t, newTestEnvOn(t, kb, nil), tc.contentType, tc.body(t), tc.events)
			})
		}
	})
}

// acceptCase posts body and checks that the topic holds exactly events (nil:
// the body decoded as JSON).
func acceptCase(t *testing.T, e *testEnv, contentType string, body []byte, events []*schemas.UserInteraction) {
	t.Helper()
	want := events
	if want == nil { // decode the body the way a client means it
		ev := new(schemas.UserInteraction)
		if err := schemas.UnmarshalJSON(body, ev); err != nil {
			t.Fatal(err)
		}
		want = []*schemas.UserInteraction{ev}
	}
	wantAccepted(t, e.post(t, contentType, body), len(want))
	recs := e.records(t, len(want))
	byID := map[string]*kgo.Record{}
	for _, r := range recs {
		var ev schemas.UserInteraction
		if err := schemas.Decode(r.Value, &ev, testNow); err != nil {
			t.Fatalf("record value does not decode: %v", err)
		}
		byID[ev.GetEventId()] = r
	}
	for _, w := range want {
		r, ok := byID[w.GetEventId()]
		if !ok {
			t.Fatalf("event %s not in the topic", w.GetEventId())
		}
		if string(r.Key) != w.GetSessionId() {
			t.Errorf("event %s keyed %q, want session_id %q", w.GetEventId(), r.Key, w.GetSessionId())
		}
		var got schemas.UserInteraction
		if err := proto.Unmarshal(r.Value, &got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&got, w) {
			t.Errorf("event %s: got %v, want %v", w.GetEventId(), &got, w)
		}
	}
}

// TestInvalidEventsProduceNothing: one bad event refuses the whole request
// with a 400 naming the field (and the index in a batch), and nothing reaches
// the topic.
func TestInvalidEventsProduceNothing(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { invalidEventsProduceNothing(t, newTestEnvOn(t, kb, nil)) })
}

func invalidEventsProduceNothing(t *testing.T, e *testEnv) {
	badQty := func() []*schemas.UserInteraction {
		evs := testEvents(6)
		evs[3] = testEvent(6) // an add_to_cart
		evs[3].GetAddToCart().Quantity = 0
		return evs
	}
	type want struct {
		status       int
		code, field  string
		index        int // -1: no index
		msgPrefix    string
		msgSubstring string
	}
	cases := []struct {
		name, contentType string
		body              []byte
		want              want
	}{
		{"json batch", "application/json", jsonArray(t, badQty()),
			want{400, CodeInvalidEvent, "add_to_cart.quantity", 3, "events[3]: add_to_cart.quantity: must be", ""}},
		{"json wrapper", "application/json", []byte(`{"events":` + string(jsonArray(t, badQty())) + `}`),
			want{400, CodeInvalidEvent, "add_to_cart.quantity", 3, "events[3]: add_to_cart.quantity: must be", ""}},
		{"protobuf batch", batchContentType, protoBatch(t, badQty()),
			want{400, CodeInvalidEvent, "add_to_cart.quantity", 3, "events[3]: add_to_cart.quantity: must be", ""}},
		{"json single", "application/json", jsonEvent(t, badQty()[3]),
			want{400, CodeInvalidEvent, "add_to_cart.quantity", -1, "add_to_cart.quantity: must be", ""}},
		{"protobuf single missing session", "application/x-protobuf", protoEvent(t, func() *schemas.UserInteraction {
			ev := testEvent(1)
			ev.SessionId = ""
			return ev
		}()), want{400, CodeInvalidEvent, "session_id", -1, "session_id: required", ""}},
		{"json future timestamp", "application/json", []byte(strings.Replace(string(jsonEvent(t, testEvent(0))), "2026-11-25", "2027-11-25", 1)),
			want{400, CodeInvalidEvent, "timestamp", -1, "timestamp:", "in the future"}},
		{"json no interaction", "application/json", []byte(`{"event_id":"e","timestamp":"2026-11-25T11:00:00Z","user_id":"u","session_id":"s"}`),
			want{400, CodeInvalidEvent, "interaction", -1, "interaction: exactly one of", ""}},
		{"json malformed element", "application/json", []byte(`[` + string(jsonEvent(t, testEvent(0))) + `, {"event_id": 7}]`),
			want{400, CodeMalformed, "", 1, "events[1]: decode json UserInteraction", ""}},
		{"json unknown field", "application/json", []byte(`{"event_id":"e","shoe_size":44}`),
			want{400, CodeMalformed, "", -1, "decode json UserInteraction", "shoe_size"}},
		{"json truncated", "application/json", jsonArray(t, testEvents(2))[:40],
			want{400, CodeMalformed, "", -1, "", "unexpected end"}},
		{"json wrapper with another member", "application/json", []byte(`{"events":[], "extra": 1}`),
			want{400, CodeMalformed, "", -1, "", `"extra"`}},
		{"json wrapper not an array", "application/json", []byte(`{"events":{}}`),
			want{400, CodeMalformed, "", -1, "", "must be an array"}},
		{"json scalar", "application/json", []byte(` 42 `),
			want{400, CodeMalformed, "", -1, "body must be a JSON object or array", ""}},
		{"json empty body", "application/json", nil,
			want{400, CodeMalformed, "", -1, "empty body", ""}},
		{"json empty array", "application/json", []byte(" [ ] "),
			want{400, CodeEmptyBatch, "", -1, "", ""}},
		{"json empty wrapper", "application/json", []byte(`{"events": []}`),
			want{400, CodeEmptyBatch, "", -1, "", ""}},
		{"protobuf empty batch", batchContentType, nil,
			want{400, CodeEmptyBatch, "", -1, "", ""}},
		{"protobuf garbage", "application/x-protobuf", []byte{0xff, 0xff, 0xff},
			want{400, CodeMalformed, "", -1, "decode protobuf UserInteraction", ""}},
		{"protobuf batch garbage", batchContentType, []byte{0x0a, 0x05, 0x01},
			want{400, CodeMalformed, "", -1, "decode protobuf UserInteractionBatch", ""}},
		{"protobuf batch with a bad element", batchContentType, append(protoBatch(t, testEvents(2)), 0x0a, 0x02, 0xff, 0xff),
			want{400, CodeMalformed, "", 2, "events[2]: decode protobuf UserInteraction", ""}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := wantError(t, e.post(t, tc.contentType, tc.body), tc.want.status, tc.want.code)
			if got.Field != tc.want.field {
				t.Errorf("field %q, want %q", got.Field, tc.want.field)
			}
			switch {
			case tc.want.index < 0 && got.Index != nil:
				t.Errorf("index %d, want none", *got.Index)
			case tc.want.index >= 0 && (got.Index == nil || *got.Index != tc.want.index):
				t.Errorf("index %v, want %d", got.Index, tc.want.index)
			}
			if !strings.HasPrefix(got.Message, tc.want.msgPrefix) || !strings.Contains(got.Message, tc.want.msgSubstring) {
				t.Errorf("message %q, want prefix %q containing %q", got.Message, tc.want.msgPrefix, tc.want.msgSubstring)
			}
		})
	}
	if n := e.endOffsets(t); n != 0 {
		t.Fatalf("%d records produced for refused requests", n)
	}
	m := e.metrics(t)
	wantMetric(t, m, `lambdarec_collector_requests_rejected_total{reason="invalid_event"} 7`)
	wantMetric(t, m, `lambdarec_collector_events_rejected_total{reason="invalid_event"} 22`) // 3 batches of 6, 4 single events
	wantMetric(t, m, `lambdarec_collector_events_accepted_total 0`)
}

func TestTooLarge(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.MaxBodyBytes = 4 << 10; c.MaxBatchEvents = 5 })

	big := jsonArray(t, testEvents(30)) // > 4 KiB
	if len(big) <= 4<<10 {
		t.Fatalf("test body of %d bytes is not too large", len(big))
	}
	// With Content-Length, refused before reading.
	wantError(t, e.post(t, "application/json", big), http.StatusRequestEntityTooLarge, CodeTooLarge)
	// Chunked, without Content-Length: refused once the limit is read.
	wantError(t, e.do(t, http.MethodPost, "/v1/events", "application/json", io.MultiReader(bytes.NewReader(big))), http.StatusRequestEntityTooLarge, CodeTooLarge)

	// Small enough in bytes, too many events.
	wantError(t, e.post(t, "application/json", jsonArray(t, testEvents(6))), http.StatusRequestEntityTooLarge, CodeTooManyEvents)
	wantError(t, e.post(t, batchContentType, protoBatch(t, testEvents(6))), http.StatusRequestEntityTooLarge, CodeTooManyEvents)
	// Exactly the limit is fine.
	wantAccepted(t, e.post(t, batchContentType, protoBatch(t, testEvents(5))), 5)
	if n := e.endOffsets(t); n != 5 {
		t.Fatalf("topic holds %d records, want the 5 accepted", n)
	}
}

func TestUnsupportedMediaType(t *testing.T) {
	e := newTestEnv(t, nil)
	body := jsonEvent(t, testEvent(0))
	for _, ct := range []string{
		"",
		"text/plain",
		"application/x-www-form-urlencoded",
		"application/json; charset=latin1",
		"application/x-protobuf; messageType=lambdarec.v1.Other",
		"application/json; =broken",
	} {
		e := wantError(t, e.post(t, ct, body), http.StatusUnsupportedMediaType, CodeUnsupportedMediaType)
		if ct == "" && !strings.Contains(e.Message, "application/x-protobuf") {
			t.Errorf("message %q should name the supported types", e.Message)
		}
	}
	req, err := http.NewRequest(http.MethodPost, e.url+"/v1/events", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("Content-Encoding gzip: status %d, want 415", resp.StatusCode)
	}
	if n := e.endOffsets(t); n != 0 {
		t.Fatalf("%d records produced", n)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		r := e.do(t, m, "/v1/events", "application/json", nil)
		wantError(t, r, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
		if allow := r.header.Get("Allow"); allow != http.MethodPost {
			t.Errorf("%s: Allow %q, want POST", m, allow)
		}
	}
}

// TestBrokerDown: with Kafka gone, a valid request gets 503 "unavailable"
// with Retry-After once the produce timeout passes, and readiness fails.
func TestBrokerDown(t *testing.T) {
	const timeout = 500 * time.Millisecond
	e := newTestEnv(t, func(c *Config) { c.ProduceTimeout = timeout })
	wantAccepted(t, e.post(t, "application/json", jsonEvent(t, testEvent(0))), 1)
	if r := e.do(t, http.MethodGet, "/readyz", "", nil); r.status != http.StatusOK {
		t.Fatalf("/readyz with the broker up: %d %s", r.status, r.body)
	}

	e.broker.Cluster.Close()
	start := time.Now()
	r := e.post(t, "application/json", jsonArray(t, testEvents(3)))
	elapsed := time.Since(start)
	got := wantError(t, r, http.StatusServiceUnavailable, CodeUnavailable)
	if ra := r.header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1", ra)
	}
	if !strings.Contains(got.Message, timeout.String()) {
		t.Errorf("message %q should name the timeout", got.Message)
	}
	if elapsed < timeout || elapsed > timeout+3*time.Second {
		t.Errorf("503 after %s, want about the produce timeout %s", elapsed, timeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := e.col.Ready(ctx); err == nil {
		t.Error("Ready with the broker down: nil error")
	}
	wantError(t, e.do(t, http.MethodGet, "/readyz", "", nil), http.StatusServiceUnavailable, "not_ready")
}

func TestReadyNeedsTheTopic(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { readyNeedsTheTopic(t, newTestEnvOn(t, kb, nil)) })
}

func readyNeedsTheTopic(t *testing.T, e *testEnv) {
	if err := e.col.Ready(context.Background()); err != nil {
		t.Fatalf("Ready with the topic: %v", err)
	}
	c, err := New(Config{Topic: "no-such-topic"}, Deps{Client: e.client})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ready(ctx); err == nil || !strings.Contains(err.Error(), "no-such-topic") {
		t.Fatalf("Ready for a missing topic: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { checkMetrics(t, newTestEnvOn(t, kb, nil)) })
}

func checkMetrics(t *testing.T, e *testEnv) {
	wantAccepted(t, e.post(t, "application/json", jsonArray(t, testEvents(4))), 4)
	wantAccepted(t, e.post(t, "application/x-protobuf", protoEvent(t, testEvent(9))), 1)
	wantError(t, e.post(t, "text/plain", []byte("x")), http.StatusUnsupportedMediaType, CodeUnsupportedMediaType)
	m := e.metrics(t)
	wantMetric(t, m, `lambdarec_collector_events_accepted_total 5`)
	wantMetric(t, m, `lambdarec_collector_requests_rejected_total{reason="unsupported_media_type"} 1`)
	wantMetric(t, m, `lambdarec_collector_events_rejected_total{reason="unsupported_media_type"} 1`)
	wantMetric(t, m, `lambdarec_collector_requests_rejected_total{reason="unavailable"} 0`)
	wantMetric(t, m, `lambdarec_collector_produce_errors_total 0`)
	wantMetric(t, m, `lambdarec_collector_produce_duration_seconds_count 2`)
	wantMetric(t, m, `lambdarec_collector_request_events_sum 5`)
	wantMetric(t, m, `lambdarec_http_request_duration_seconds_count{code="202",handler="/v1/events",method="POST"} 2`)
	wantMetric(t, m, `lambdarec_http_request_duration_seconds_count{code="415",handler="/v1/events",method="POST"} 1`)
}

func TestNewChecksItsInputs(t *testing.T) {
	e := newTestEnv(t, nil)
	if _, err := New(Config{}, Deps{Client: e.client}); err == nil {
		t.Error("no topic accepted")
	}
	if _, err := New(Config{Topic: testTopic}, Deps{}); err == nil {
		t.Error("no client accepted")
	}
	if _, err := New(Config{Topic: testTopic, ProduceTimeout: -time.Second}, Deps{Client: e.client}); err == nil {
		t.Error("negative produce timeout accepted")
	}
	leaderOnly, err := kgo.NewClient(kgo.SeedBrokers(e.broker.Brokers...), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	if err != nil {
		t.Fatal(err)
	}
	defer leaderOnly.Close()
	if _, err := New(Config{Topic: testTopic}, Deps{Client: leaderOnly}); err == nil || !strings.Contains(err.Error(), "acks") {
		t.Errorf("client with leader acks accepted: %v", err)
	}
}
