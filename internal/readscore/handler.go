package readscore

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/lambdarec/lambdarec/internal/store"
)

// Path is the route a speed member serves read-time scoring on (its
// speed.metrics_addr), POST only.
const Path = "/internal/v1/score"

// Bounds of a request: its body, its recent and purchased items, an
// item's length.
const (
	MaxBodyBytes = 64 << 10
	MaxRecent    = 100
	MaxPurchased = 1000
	MaxItemBytes = 512
)

// Error codes of the handler's error responses ({"error":{"code",
// "message"}}, the project's error shape).
const (
	CodeBadRequest   = "bad_request"
	CodeUnauthorized = "unauthorized"
	CodeNotReady     = "not_ready"
	CodeCanceled     = "canceled"
	CodeInternal     = "internal"
)

// retryAfter is the Retry-After of a 503 (seconds): a member not ready is
// joining, replaying or stopping.
const retryAfter = "1"

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // plain structs: they always encode
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

// Handler serves POST Path for s: a JSON Request in, a JSON Result out.
// A bad request (not JSON, unknown fields, trailing data, a body over
// MaxBodyBytes, no recent items, more than MaxRecent recent or
// MaxPurchased purchased items, an empty item or one over MaxItemBytes)
// is 400; with a token configured (non-empty), a request without
// "Authorization: Bearer <token>" is 401 (compared in constant time); a
// scorer not ready (ErrNotReady) is 503 with Retry-After; a request whose
// context ended is 503 too; any other error is 500. Errors are
// {"error":{"code","message"}}. Other methods are 405 (the route is
// registered as "POST Path" on a ServeMux).
func Handler(s Scorer, token string) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "POST only")
			return
		}
		if token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lambdarec-speed"`)
			writeError(w, http.StatusUnauthorized, CodeUnauthorized, "missing or wrong bearer token")
			return
		}
		req, err := decodeRequest(w, r)
		if err != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
			return
		}
		res, err := s.ScoreRecent(r.Context(), req)
		switch {
		case err == nil:
			if res.Items == nil {
				res.Items = []store.Scored{}
			}
			writeJSON(w, http.StatusOK, res)
		case errors.Is(err, ErrNotReady):
			w.Header().Set("Retry-After", retryAfter)
			writeError(w, http.StatusServiceUnavailable, CodeNotReady, err.Error())
		case r.Context().Err() != nil:
			writeError(w, http.StatusServiceUnavailable, CodeCanceled, "request canceled")
		default:
			writeError(w, http.StatusInternalServerError, CodeInternal, "scoring failed")
		}
	})
}

// decodeRequest reads and checks a request's body.
func decodeRequest(w http.ResponseWriter, r *http.Request) (Request, error) {
	var req Request
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return req, fmt.Errorf("content type %q: want application/json", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return req, fmt.Errorf("body over %d bytes", MaxBodyBytes)
		}
		return req, fmt.Errorf("body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, errors.New("body: data after the request")
	}
	return req, req.Check()
}

// Check reports whether req is within the handler's bounds: at least one
// and at most MaxRecent recent items, at most MaxPurchased purchased, each
// item non-empty and at most MaxItemBytes.
func (req Request) Check() error {
	if len(req.Recent) == 0 {
		return errors.New("recent: no items")
	}
	if len(req.Recent) > MaxRecent {
		return fmt.Errorf("recent: %d items, at most %d", len(req.Recent), MaxRecent)
	}
	if len(req.Purchased) > MaxPurchased {
		return fmt.Errorf("purchased: %d items, at most %d", len(req.Purchased), MaxPurchased)
	}
	if err := checkItems("recent", req.Recent); err != nil {
		return err
	}
	return checkItems("purchased", req.Purchased)
}

func checkItems(field string, items []string) error {
	for i, it := range items {
		if it == "" || len(it) > MaxItemBytes {
			return fmt.Errorf("%s[%d]: an item is 1 to %d bytes", field, i, MaxItemBytes)
		}
	}
	return nil
}
