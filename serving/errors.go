package serving

import (
	"encoding/json"
	"net/http"
)

// Error codes shared by every endpoint. Endpoints add their own (the
// collector's are in package collector).
const (
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeNotReady         = "not_ready"
	CodeInternal         = "internal"
)

// Error is the body of every error response, wrapped as {"error": Error}.
type Error struct {
	// Code is a stable, machine-readable reason such as "invalid_event".
	Code string `json:"code"`
	// Message is a human-readable explanation.
	Message string `json:"message"`
	// Field is the protobuf/JSON path of the offending field, when one is known.
	Field string `json:"field,omitempty"`
	// Index is the position of the offending element in a batch request.
	Index *int `json:"index,omitempty"`
}

// errorBody is the JSON envelope of an Error.
type errorBody struct {
	Error Error `json:"error"`
}

// WriteError writes e as {"error": e} with the given status.
func WriteError(w http.ResponseWriter, status int, e Error) {
	WriteJSON(w, status, errorBody{Error: e})
}

// WriteJSON writes v as a JSON response with the given status. Encoding
// errors cannot be reported to the client any more and are ignored: every
// value passed here is a plain struct or map that always encodes.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
