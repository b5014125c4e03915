package collector

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/lambdarec/lambdarec/schemas"
	"github.com/lambdarec/lambdarec/serving"
)

// IngestError is a refusal of Ingest: Status is the HTTP status the same
// refusal gets at POST /v1/events, Err its JSON error (code, message,
// field, index).
type IngestError struct {
	Status int
	Err    serving.Error
}

func (e *IngestError) Error() string { return e.Err.Message }

// Ingest is POST /v1/events for events already decoded (the gRPC API's
// IngestEvents): the same checks, all or nothing, and the same guarantee —
// it returns the number of events only once Kafka acknowledged every one of
// them. A refusal is an *IngestError: invalid_event or malformed with the
// event's index and field, empty_batch, too_many_events, overloaded (the
// in-flight request or bytes limit), or unavailable when Kafka did not
// acknowledge within the produce timeout (some events may have been
// written: retry with the same event ids). The size of the encoded request
// is bounded by the caller (serve.max_body_bytes).
//
// Like a POST body, the request holds its encoded size (requestBytes) of
// serve.max_inflight_bytes until it is answered: the events are already
// decoded when Ingest is called, so the budget bounds what requests waiting
// for Kafka hold together, not the decoding of one.
func (c *Collector) Ingest(ctx context.Context, events []*schemas.UserInteraction) (int, error) {
	if !c.budget.acquireRequest() {
		return 0, c.ingestRefused(reject(http.StatusServiceUnavailable, CodeOverloaded,
			"the collector is at its limit (%d requests in flight); retry later", c.cfg.MaxInflightRequests), len(events))
	}
	defer c.budget.releaseRequest()
	held := requestBytes(events)
	if !c.budget.acquireBytes(held) {
		return 0, c.ingestRefused(reject(http.StatusServiceUnavailable, CodeOverloaded,
			"the collector is at its limit (%d bytes of requests in flight); retry later", c.cfg.MaxInflightBytes), len(events))
	}
	defer c.budget.releaseBytes(held)
	switch {
	case len(events) == 0:
		return 0, c.ingestRefused(reject(http.StatusBadRequest, CodeEmptyBatch, "the batch has no events"), 0)
	case len(events) > c.cfg.MaxBatchEvents:
		return 0, c.ingestRefused(reject(http.StatusRequestEntityTooLarge, CodeTooManyEvents, "more than %d events in one request", c.cfg.MaxBatchEvents), len(events))
	}
	now := c.now()
	size := 0
	for i, ev := range events {
		if ev == nil {
			return 0, c.ingestRefused(eventRejection(errors.New("event is null"), i, true), len(events))
		}
		if err := schemas.Validate(ev, now); err != nil {
			return 0, c.ingestRefused(eventRejection(err, i, true), len(events))
		}
		size += len(ev.GetSessionId()) + 256
	}
	records, rej := encodeRecords(c.cfg.Topic, decoded{events: events, batch: true}, size)
	if rej != nil {
		return 0, c.ingestRefused(rej, len(events))
	}
	n := len(records)
	if err := c.produce(ctx, records); err != nil {
		c.m.produceErrors.Inc()
		c.log.Warn("events not acknowledged by kafka", "topic", c.cfg.Topic, "events", n, "err", err)
		msg := "Kafka did not acknowledge the events: " + err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			msg = "Kafka did not acknowledge the events within " + c.cfg.ProduceTimeout.String()
		}
		return 0, c.ingestRefused(&rejection{status: http.StatusServiceUnavailable, err: serving.Error{Code: CodeUnavailable, Message: msg}}, n)
	}
	c.m.accepted.Add(float64(n))
	c.m.requestEvents.Observe(float64(n))
	return n, nil
}

// requestBytes is the encoded size of a batch of events as one message
// (lambdarec.v1.IngestEventsRequest or UserInteractionBatch: each event a
// length-delimited field 1), what the request's body held on the wire.
func requestBytes(events []*schemas.UserInteraction) int64 {
	var n int64
	for _, ev := range events {
		s := proto.Size(ev)
		n += 1 + int64(protowire.SizeVarint(uint64(s))) + int64(s)
	}
	return n
}

// ingestRefused counts rej as refuse does and returns it as an error.
func (c *Collector) ingestRefused(rej *rejection, events int) error {
	c.m.rejectedRequests.WithLabelValues(rej.err.Code).Inc()
	c.m.rejectedEvents.WithLabelValues(rej.err.Code).Add(float64(max(events, 1)))
	return &IngestError{Status: rej.status, Err: rej.err}
}
