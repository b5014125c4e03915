package collector

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/lambdarec/lambdarec/schemas"
	"github.com/lambdarec/lambdarec/serving"
)

// Error codes of POST /v1/events, in the "code" of the JSON error.
const (
	CodeMalformed            = "malformed"              // 400: the body is not JSON/protobuf events
	CodeInvalidEvent         = "invalid_event"          // 400: an event breaks the contract (schemas.Validate)
	CodeEmptyBatch           = "empty_batch"            // 400: a batch with no events
	CodeTooLarge             = "too_large"              // 413: the body exceeds serve.max_body_bytes
	CodeTooManyEvents        = "too_many_events"        // 413: more than serve.max_batch_events events
	CodeUnsupportedMediaType = "unsupported_media_type" // 415: Content-Type is neither JSON nor protobuf
	CodeMethodNotAllowed     = serving.CodeMethodNotAllowed
	CodeUnavailable          = "unavailable" // 503: Kafka did not acknowledge the events
)

// Protobuf message names accepted in the messageType parameter of an
// application/x-protobuf Content-Type.
var (
	messageTypeEvent = string((&schemas.UserInteraction{}).ProtoReflect().Descriptor().FullName())
	messageTypeBatch = string((&schemas.UserInteractionBatch{}).ProtoReflect().Descriptor().FullName())
)

// format is the encoding of a request body.
type format uint8

const (
	formatJSON format = iota + 1
	formatProtobuf
)

// rejection is a request refused with a 4xx (or 503) JSON error.
type rejection struct {
	status int
	err    serving.Error
	// events is how many events the request carried, when known, else 0.
	events int
}

func reject(status int, code, format string, args ...any) *rejection {
	return &rejection{status: status, err: serving.Error{Code: code, Message: fmt.Sprintf(format, args...)}}
}

// parseContentType returns the body format and, for protobuf, whether the
// body is a UserInteractionBatch.
func parseContentType(h string) (f format, protoBatch bool, rej *rejection) {
	// The common exact values skip mime's parsing and its allocations.
	switch h {
	case "application/json":
		return formatJSON, false, nil
	case "application/x-protobuf", "application/protobuf":
		return formatProtobuf, false, nil
	case "":
		return 0, false, reject(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
			"Content-Type is required: application/json or application/x-protobuf")
	}
	mt, params, err := mime.ParseMediaType(h)
	if err != nil {
		return 0, false, reject(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "Content-Type %q: %v", h, err)
	}
	switch mt {
	case "application/json":
		if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
			return 0, false, reject(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "charset %q: JSON bodies must be UTF-8", cs)
		}
		return formatJSON, false, nil
	case "application/x-protobuf", "application/protobuf":
		switch mtype := params["messagetype"]; mtype {
		case "", messageTypeEvent:
			return formatProtobuf, false, nil
		case messageTypeBatch:
			return formatProtobuf, true, nil
		default:
			return 0, false, reject(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
				"messageType %q: must be %s or %s", mtype, messageTypeEvent, messageTypeBatch)
		}
	}
	return 0, false, reject(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType,
		"Content-Type %q: must be application/json or application/x-protobuf", mt)
}

// decoded is the outcome of decoding a request body.
type decoded struct {
	events []*schemas.UserInteraction
	// batch says the body was a batch (JSON array or wrapper, protobuf
	// UserInteractionBatch), even of one event: errors then carry an index.
	batch bool
}

// decodeBody splits body into events, decodes them and validates every one
// against now. Nothing is returned unless all events are valid.
func decodeBody(f format, protoBatch bool, body []byte, now time.Time, maxEvents int) (decoded, *rejection) {
	var (
		raws  [][]byte
		batch bool
		err   error
	)
	switch f {
	case formatJSON:
		raws, batch, err = splitJSON(body, maxEvents)
	case formatProtobuf:
		if protoBatch {
			batch = true
			raws, err = splitProtoBatch(body, maxEvents)
		} else {
			raws = [][]byte{body}
		}
	default:
		return decoded{}, reject(http.StatusUnsupportedMediaType, CodeUnsupportedMediaType, "unknown body format")
	}
	switch {
	case errors.Is(err, errTooMany):
		return decoded{}, reject(http.StatusRequestEntityTooLarge, CodeTooManyEvents, "more than %d events in one request", maxEvents)
	case err != nil:
		return decoded{}, reject(http.StatusBadRequest, CodeMalformed, "%v", err)
	case len(raws) == 0:
		return decoded{}, reject(http.StatusBadRequest, CodeEmptyBatch, "the batch has no events")
	}

	// One allocation for all events; they are never copied, only pointed to.
	store := make([]schemas.UserInteraction, len(raws))
	events := make([]*schemas.UserInteraction, len(raws))
	for i, raw := range raws {
		ev := &store[i]
		events[i] = ev
		var err error
		if f == formatJSON {
			if err = schemas.UnmarshalJSON(raw, ev); err == nil {
				err = schemas.Validate(ev, now)
			}
		} else {
			err = schemas.Decode(raw, ev, now)
		}
		if err != nil {
			rej := eventRejection(err, i, batch)
			rej.events = len(raws)
			return decoded{}, rej
		}
	}
	return decoded{events: events, batch: batch}, nil
}

// eventRejection is the 400 for event i failing with err (a
// *schemas.DecodeError or *schemas.FieldError).
func eventRejection(err error, i int, batch bool) *rejection {
	e := serving.Error{Code: CodeMalformed, Message: err.Error()}
	if fe := (*schemas.FieldError)(nil); errors.As(err, &fe) {
		e.Code, e.Field = CodeInvalidEvent, fe.Field
	}
	if batch {
		e.Index = &i
		e.Message = "events[" + strconv.Itoa(i) + "]: " + e.Message
	}
	return &rejection{status: http.StatusBadRequest, err: e}
}

// splitJSON splits a JSON body into the raw events it holds: the body itself
// for one event object, the elements of a top-level array, or the elements
// of the "events" array of an {"events": [...]} wrapper.
func splitJSON(body []byte, maxEvents int) (raws [][]byte, batch bool, err error) {
	i := skipSpace(body, 0)
	if i == len(body) {
		return nil, false, errors.New("empty body")
	}
	switch body[i] {
	case '[':
		raws, err = splitArray(body, maxEvents)
		return raws, true, err
	case '{':
		v, wrapper, err := eventsMember(body)
		switch {
		case err != nil:
			return nil, true, err
		case wrapper:
			if j := skipSpace(v, 0); j == len(v) || v[j] != '[' {
				return nil, true, errors.New(`"events" must be an array`)
			}
			raws, err = splitArray(v, maxEvents)
			return raws, true, err
		}
		return [][]byte{body}, false, nil
	}
	return nil, false, fmt.Errorf("body must be a JSON object or array, found %q at offset %d", body[i], i)
}

// splitProtoBatch returns the encoded events of a protobuf
// UserInteractionBatch without decoding them. Unknown fields are skipped, as
// protobuf decoding would.
func splitProtoBatch(b []byte, maxEvents int) ([][]byte, error) {
	var raws [][]byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("decode protobuf UserInteractionBatch: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType {
			// Unknown fields, and field 1 with another wire type, are
			// skipped: protobuf decoding keeps them as unknown fields.
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil, fmt.Errorf("decode protobuf UserInteractionBatch: field %d: %w", num, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, fmt.Errorf("decode protobuf UserInteractionBatch: events[%d]: %w", len(raws), protowire.ParseError(n))
		}
		if len(raws) == maxEvents {
			return nil, errTooMany
		}
		raws = append(raws, v)
		b = b[n:]
	}
	return raws, nil
}
