package serving

// The read API as functions, for the other front ends of the same logic (the
// gRPC API in serving/rpc): the same validation, the same merge, the same
// status evaluation and the same metrics as the HTTP handlers, with errors
// as values instead of responses.

import (
	"context"
	"errors"
	"fmt"
)

// ErrStoreUnavailable marks a read that failed because the serving store did
// not answer (HTTP 503 store_unavailable); retry later.
var ErrStoreUnavailable = errors.New("the serving store is unavailable")

// RequestError is a request the read API refuses (HTTP 400); Err is the
// error the HTTP API answers with.
type RequestError struct{ Err Error }

func (e *RequestError) Error() string { return e.Err.Message }

// RecommendationsRequest is a request for recommendations, as GET
// /v1/recommendations takes it.
type RecommendationsRequest struct {
	// UserID or SessionID is required.
	UserID    string
	SessionID string
	// K is the number of items; 0 takes APIConfig.DefaultK.
	K int
	// Explain asks for the reasons behind each item.
	Explain bool
}

// SimilarRequest is a request for an item's neighbours, as GET
// /v1/items/{item_id}/similar takes it.
type SimilarRequest struct {
	ItemID string
	// K is the number of items; 0 takes APIConfig.DefaultK.
	K int
}

// Recommendations answers req as GET /v1/recommendations does. Errors are a
// *RequestError for a bad request, ErrStoreUnavailable (wrapping the store's
// error) when the store fails, or ctx's error when ctx ended first.
func (a *API) Recommendations(ctx context.Context, req RecommendationsRequest) (*Recommendations, error) {
	q := recsQuery{UserID: req.UserID, SessionID: req.SessionID, Explain: req.Explain}
	var perr *Error
	if q.K, perr = a.cfg.checkK(req.K); perr == nil {
		if _, perr = checkID("user_id", req.UserID); perr == nil {
			_, perr = checkID("session_id", req.SessionID)
		}
	}
	if perr == nil && q.UserID == "" && q.SessionID == "" {
		perr = paramError(CodeMissingParameter, "user_id", "user_id or session_id is required")
	}
	if perr != nil {
		a.m.badRequests.Inc()
		return nil, &RequestError{Err: *perr}
	}
	if err := a.readable(ctx, "current_batch"); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
	defer cancel()
	out, op, err := a.recommend(sctx, q)
	if err != nil {
		return nil, a.readError(ctx, op, err)
	}
	a.m.observeAnswer(out.Items)
	return out, nil
}

// SimilarItems answers req as GET /v1/items/{item_id}/similar does, with the
// errors of Recommendations.
func (a *API) SimilarItems(ctx context.Context, req SimilarRequest) (*Similar, error) {
	q := similarQuery{ItemID: req.ItemID}
	var perr *Error
	if q.K, perr = a.cfg.checkK(req.K); perr == nil {
		if _, perr = checkID("item_id", req.ItemID); perr == nil && req.ItemID == "" {
			perr = paramError(CodeMissingParameter, "item_id", "item_id is required")
		}
	}
	if perr != nil {
		a.m.badRequests.Inc()
		return nil, &RequestError{Err: *perr}
	}
	if err := a.readable(ctx, "current_batch"); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
	defer cancel()
	out, op, err := a.similar(sctx, q)
	if err != nil {
		return nil, a.readError(ctx, op, err)
	}
	return out, nil
}

// Status is the status GET /v1/status answers with: the same evaluation,
// reused for a second.
func (a *API) Status(ctx context.Context) Status { return a.cachedStatus(ctx) }

// Ready reports whether the serving store answers: the "store" check of
// /readyz.
func (a *API) Ready(ctx context.Context) error { return a.storeHealth(ctx) }

// checkK is k, or the default for 0, when it is within 1..MaxK.
func (c *APIConfig) checkK(k int) (int, *Error) {
	if k == 0 {
		return c.DefaultK, nil
	}
	if k < 1 || k > c.MaxK {
		return 0, paramError(CodeInvalidParameter, "k", "k must be an integer between 1 and %d, got %d", c.MaxK, k)
	}
	return k, nil
}

// readable fails when the last store check failed, as the HTTP handlers
// answer 503 then.
func (a *API) readable(ctx context.Context, op string) error {
	if err := a.storeHealth(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.m.storeErrors.WithLabelValues(op).Inc()
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	return nil
}

// readError classifies a failed store read: ctx's error when the caller's
// context ended (its deadline or cancellation), else ErrStoreUnavailable.
func (a *API) readError(ctx context.Context, op string, err error) error {
	a.m.storeErrors.WithLabelValues(op).Inc()
	if ctx.Err() != nil {
		a.log.Debug("store read abandoned", "op", op, "err", err)
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	a.log.Warn("store read failed", "op", op, "err", err)
	return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
}
