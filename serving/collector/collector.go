// Package collector owns the event collector, POST /v1/events: the entry
// point of lambdarec's data flow. It decodes JSON or protobuf events, checks
// every one against the contract (schemas.Validate), writes them to the Kafka
// topic `events` keyed by session_id, and acknowledges a request only once
// Kafka has acknowledged every one of its records.
package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lambdarec/lambdarec/schemas"
	"github.com/lambdarec/lambdarec/serving"
)

// Config configures a Collector.
type Config struct {
	// Topic receives the events. Required.
	Topic string
	// MaxBodyBytes bounds a request body; larger bodies get 413. Default: 1 MiB.
	MaxBodyBytes int64
	// MaxBatchEvents bounds the events of one request; more get 413. Default: 1000.
	MaxBatchEvents int
	// ProduceTimeout bounds the wait for Kafka's acknowledgement; past it the
	// request gets 503. Default: 10s.
	ProduceTimeout time.Duration
	// RetryAfter is the Retry-After of a 503. Default: 1s.
	RetryAfter time.Duration
	// MaxInflightRequests bounds the requests handled at once; past it a
	// request gets 503 overloaded, its body unread. Default: 1024.
	MaxInflightRequests int
	// MaxInflightBytes bounds the request bodies held at once (a body's
	// Content-Length is reserved before it is read; a chunked body's bytes
	// as they are read); past it a request gets 503 overloaded. At least
	// MaxBodyBytes. Default: 128 MiB.
	MaxInflightBytes int64
}

func (c *Config) validate() error {
	if c.Topic == "" {
		return errors.New("collector: topic is required")
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.MaxBatchEvents == 0 {
		c.MaxBatchEvents = 1000
	}
	if c.ProduceTimeout == 0 {
		c.ProduceTimeout = 10 * time.Second
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = time.Second
	}
	if c.MaxInflightRequests == 0 {
		c.MaxInflightRequests = 1024
	}
	if c.MaxInflightBytes == 0 {
		c.MaxInflightBytes = max(128<<20, c.MaxBodyBytes)
	}
	switch {
	case c.MaxInflightRequests < 0:
		return fmt.Errorf("collector: max in-flight requests must be positive, got %d", c.MaxInflightRequests)
	case c.MaxInflightBytes < c.MaxBodyBytes:
		return fmt.Errorf("collector: max in-flight bytes %d must be at least max body bytes %d", c.MaxInflightBytes, c.MaxBodyBytes)
	case c.MaxBodyBytes < 0:
		return fmt.Errorf("collector: max body bytes must be positive, got %d", c.MaxBodyBytes)
	case c.MaxBatchEvents < 0:
		return fmt.Errorf("collector: max batch events must be positive, got %d", c.MaxBatchEvents)
	case c.ProduceTimeout < 0:
		return fmt.Errorf("collector: produce timeout must be positive, got %s", c.ProduceTimeout)
	case c.RetryAfter < 0:
		return fmt.Errorf("collector: retry-after must be positive, got %s", c.RetryAfter)
	}
	return nil
}

// Deps are what a Collector needs besides its configuration.
type Deps struct {
	// Client produces the records. It must require acknowledgement from all
	// in-sync replicas, as internal/kafka.NewClient's clients do. The
	// collector does not close it.
	Client *kgo.Client
	// Log receives the collector's logs. Default: discard.
	Log *slog.Logger
	// Registerer receives the collector's metrics. Default: not exported.
	Registerer prometheus.Registerer
	// Now is the clock events are validated against. Default: time.Now.
	Now func() time.Time
}

// Collector is the http.Handler of POST /v1/events.
type Collector struct {
	cfg        Config
	client     *kgo.Client
	log        *slog.Logger
	now        func() time.Time
	m          *metrics
	retryAfter string
	budget     budget
}

// New returns a collector producing to cfg.Topic through deps.Client.
func New(cfg Config, deps Deps) (*Collector, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.Client == nil {
		return nil, errors.New("collector: kafka client is required")
	}
	if acks, _ := deps.Client.OptValue(kgo.RequiredAcks).(kgo.Acks); acks != kgo.AllISRAcks() {
		return nil, errors.New("collector: the kafka client must require acks from all in-sync replicas")
	}
	c := &Collector{
		cfg:        cfg,
		client:     deps.Client,
		log:        deps.Log,
		now:        deps.Now,
		retryAfter: strconv.Itoa(max(1, int((cfg.RetryAfter+time.Second-1)/time.Second))),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	c.m = m
	c.budget.maxBytes, c.budget.maxReqs = cfg.MaxInflightBytes, int64(cfg.MaxInflightRequests)
	if err := m.registerBudget(reg, &c.budget); err != nil {
		return nil, err
	}
	return c, nil
}

// bodyPool recycles request-body buffers: they are dropped as soon as the
// events are decoded (decoding copies what it keeps).
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// ServeHTTP handles POST /v1/events.
//
// The body is one event or a batch, all-or-nothing: either every event is
// valid and acknowledged by Kafka (202 {"accepted": N}), or the request is
// refused and nothing is written for it by the collector.
//
//   - Content-Type: application/json — one UserInteraction object, a JSON
//     array of them, or {"events": [...]}; protojson mapping with proto field
//     names (camelCase names are accepted too).
//   - Content-Type: application/x-protobuf (or application/protobuf) — one
//     encoded lambdarec.v1.UserInteraction; a lambdarec.v1.UserInteractionBatch
//     when the media type says so with its messageType parameter:
//     "application/x-protobuf; messageType=lambdarec.v1.UserInteractionBatch".
//
// Errors are JSON {"error": {"code", "message", "field", "index"}}; field names
// the offending field and index the offending event of a batch:
//
//	400 malformed, invalid_event, empty_batch; 405 method_not_allowed;
//	413 too_large (body over MaxBodyBytes), too_many_events (over MaxBatchEvents);
//	415 unsupported_media_type (also for any Content-Encoding but identity);
//	503 unavailable (with Retry-After): Kafka did not acknowledge in time;
//	503 overloaded (with Retry-After): MaxInflightRequests requests or
//	MaxInflightBytes of bodies are already held. A body whose length is
//	known is refused before any of it is read, and the connection closed.
//
// A 503 unavailable means Kafka did not acknowledge every record in time; some of them
// may have been written nonetheless. Clients retry with the same event_ids,
// and consumers deduplicate by event_id.
func (c *Collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		c.refuse(w, r, reject(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s is not allowed on %s: use POST", r.Method, r.URL.Path))
		return
	}
	f, protoBatch, rej := parseContentType(r.Header.Get("Content-Type"))
	if rej != nil {
		c.refuse(w, r, rej)
		return
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		c.refuse(w, r, reject(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Encoding %q is not supported", ce))
		return
	}
	if r.ContentLength > c.cfg.MaxBodyBytes {
		c.refuse(w, r, c.tooLarge(w))
		return
	}
	if !c.budget.acquireRequest() {
		c.refuse(w, r, c.overloaded(w, "%d requests in flight", c.cfg.MaxInflightRequests))
		return
	}
	defer c.budget.releaseRequest()
	var body io.Reader = r.Body
	if r.ContentLength >= 0 {
		if !c.budget.acquireBytes(r.ContentLength) {
			c.refuse(w, r, c.overloaded(w, "%d bytes of request bodies in flight", c.cfg.MaxInflightBytes))
			return
		}
		defer c.budget.releaseBytes(r.ContentLength)
	} else {
		mb := &meteredBody{r: r.Body, b: &c.budget}
		defer func() { c.budget.releaseBytes(mb.held) }()
		body = mb
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	defer bodyPool.Put(buf)
	buf.Reset()
	if r.ContentLength > 0 {
		// No regrowth (and no spare capacity) while reading.
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, io.NopCloser(body), c.cfg.MaxBodyBytes)); err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			c.refuse(w, r, c.tooLarge(w))
			return
		}
		if errors.Is(err, errOverloaded) {
			c.refuse(w, r, c.overloaded(w, "%d bytes of request bodies in flight", c.cfg.MaxInflightBytes))
			return
		}
		c.refuse(w, r, reject(http.StatusBadRequest, CodeMalformed, "read body: %v", err))
		return
	}
	d, rej := decodeBody(f, protoBatch, buf.Bytes(), c.now(), c.cfg.MaxBatchEvents)
	if rej != nil {
		c.refuse(w, r, rej)
		return
	}
	records, rej := encodeRecords(c.cfg.Topic, d, buf.Len())
	if rej != nil {
		c.refuse(w, r, rej)
		return
	}
	n := len(records)
	if err := c.produce(r.Context(), records); err != nil {
		c.m.produceErrors.Inc()
		c.log.Warn("events not acknowledged by kafka", "topic", c.cfg.Topic, "events", n, "err", err)
		w.Header().Set("Retry-After", c.retryAfter)
		msg := "Kafka did not acknowledge the events: " + err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			msg = "Kafka did not acknowledge the events within " + c.cfg.ProduceTimeout.String()
		}
		rej := &rejection{status: http.StatusServiceUnavailable, err: serving.Error{Code: CodeUnavailable, Message: msg}, events: n}
		c.refuse(w, r, rej)
		return
	}
	c.m.accepted.Add(float64(n))
	c.m.requestEvents.Observe(float64(n))
	serving.WriteJSON(w, http.StatusAccepted, accepted{Accepted: n})
}

type accepted struct {
	Accepted int `json:"accepted"`
}

// tooLarge refuses an oversized body. The connection is closed after the
// answer rather than drained of the rest of the body.
func (c *Collector) tooLarge(w http.ResponseWriter) *rejection {
	w.Header().Set("Connection", "close")
	return reject(http.StatusRequestEntityTooLarge, CodeTooLarge, "body larger than %d bytes", c.cfg.MaxBodyBytes)
}

// overloaded refuses a request the budget has no room for, with
// Retry-After. The connection is closed after the answer, so the body is
// never read.
func (c *Collector) overloaded(w http.ResponseWriter, format string, args ...any) *rejection {
	h := w.Header()
	h.Set("Connection", "close")
	h.Set("Retry-After", c.retryAfter)
	rej := reject(http.StatusServiceUnavailable, CodeOverloaded, "the collector is at its limit (%s); retry later", fmt.Sprintf(format, args...))
	return rej
}

// refuse writes rej and counts it.
func (c *Collector) refuse(w http.ResponseWriter, r *http.Request, rej *rejection) {
	c.m.rejectedRequests.WithLabelValues(rej.err.Code).Inc()
	c.m.rejectedEvents.WithLabelValues(rej.err.Code).Add(float64(max(rej.events, 1)))
	if rej.status < 500 {
		c.log.Debug("events rejected", "code", rej.err.Code, "status", rej.status, "message", rej.err.Message, "remote", r.RemoteAddr)
	}
	serving.WriteError(w, rej.status, rej.err)
}

// encodeRecords turns the events into records keyed by session_id whose
// values are the protobuf encodings. Keys and values of all records share one
// buffer, sized from the body.
func encodeRecords(topic string, d decoded, sizeHint int) ([]*kgo.Record, *rejection) {
	recs := make([]kgo.Record, len(d.events))
	ptrs := make([]*kgo.Record, len(d.events))
	buf := make([]byte, 0, sizeHint)
	for i, ev := range d.events {
		start := len(buf)
		buf = append(buf, ev.GetSessionId()...)
		keyEnd := len(buf)
		var err error
		if buf, err = schemas.Encode(buf, ev); err != nil {
			// Validate checks every string is UTF-8, so this is unexpected;
			// still the event's fault, not the server's.
			return nil, eventRejection(&schemas.DecodeError{Format: "protobuf", Err: err}, i, d.batch)
		}
		// Earlier records keep pointing into older arrays if buf grew:
		// those bytes stay valid.
		recs[i] = kgo.Record{
			Topic: topic,
			Key:   buf[start:keyEnd:keyEnd],
			Value: buf[keyEnd:len(buf):len(buf)],
		}
		ptrs[i] = &recs[i]
	}
	return ptrs, nil
}

// produce writes records and waits until Kafka acknowledged all of them, or
// the produce timeout passes. The wait does not end when the client goes
// away: a request that was valid is written through.
func (c *Collector) produce(ctx context.Context, records []*kgo.Record) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.ProduceTimeout)
	defer cancel()
	start := time.Now()
	// ProduceSync can outlive ctx for records already sent (the idempotent
	// producer must learn their outcome), so the answer does not wait for it.
	done := make(chan error, 1)
	go func() { done <- c.client.ProduceSync(ctx, records...).FirstErr() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.m.produceDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		return fmt.Errorf("produce %d records to %s: %w", len(records), c.cfg.Topic, err)
	}
	return nil
}

// Ready reports whether the events topic is reachable: a broker answers a
// metadata request for it (never served from the client's metadata cache)
// and the topic exists with partitions. It is the collector's /readyz check.
func (c *Collector) Ready(ctx context.Context) error {
	req := kmsg.NewPtrMetadataRequest()
	req.AllowAutoTopicCreation = false
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(c.cfg.Topic)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, c.client)
	if err != nil {
		return fmt.Errorf("kafka metadata: %w", err)
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != c.cfg.Topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return fmt.Errorf("topic %s: %w", c.cfg.Topic, err)
		}
		if len(t.Partitions) == 0 {
			return fmt.Errorf("topic %s: no partitions", c.cfg.Topic)
		}
		return nil
	}
	return fmt.Errorf("topic %s: not in metadata", c.cfg.Topic)
}
