package serving

// The read API of the serving layer: GET /v1/recommendations (the merge of
// the real-time and batch views by recency), GET /v1/items/{item_id}/similar,
// GET /v1/status and the OpenAPI document at /openapi.json. Build it with
// NewAPI and mount it on a Server with API.Mount.

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/readscore"
	"github.com/lambdarec/lambdarec/internal/store"
)

// Error codes of the read API.
const (
	// CodeInvalidParameter: a query or path parameter is malformed or out of
	// range; Field names it.
	CodeInvalidParameter = "invalid_parameter"
	// CodeMissingParameter: a required parameter is absent; Field names it.
	CodeMissingParameter = "missing_parameter"
	// CodeStoreUnavailable: the serving store did not answer; retry later.
	CodeStoreUnavailable = "store_unavailable"
)

// APIConfig configures an API. Zero values take the defaults.
type APIConfig struct {
	// DefaultK is the number of items answered when k is not given.
	// Default: 10, or MaxK when that is smaller.
	DefaultK int
	// MaxK is the largest k accepted; a larger k gets 400. Default: 100.
	MaxK int
	// StoreTimeout bounds the store reads of one request; past it the
	// request gets 503. Default: 2s.
	StoreTimeout time.Duration
	// StatusTimeout bounds each StatusSource of /v1/status. Default: 2s.
	StatusTimeout time.Duration
	// Thresholds are what /v1/status judges the layers by. Zero values
	// judge nothing.
	Thresholds StatusThresholds
	// Model is the model's parameters (model.*), which batch items are
	// explained with: the batch scored a user from the top Neighbors of
	// each recent item's row. Zero: model.DefaultParams().
	Model model.Params
	// ReadScoreTimeout bounds the read-time scoring of one answer (with
	// APIDeps.Scorer); past it the stored view is answered. Default: 50ms.
	ReadScoreTimeout time.Duration
}

// StatusThresholds are the limits past which /v1/status reports a layer
// degraded.
type StatusThresholds struct {
	// MaxLagRecords: more records waiting for the archive or the speed
	// layer (status.max_lag.records).
	MaxLagRecords int64
	// MaxLagTime: records waiting longer than this (status.max_lag.time).
	MaxLagTime time.Duration
	// BatchInterval is the batch schedule's interval: a batch older than
	// twice it is stale.
	BatchInterval time.Duration
}

// MaxIDLen bounds user, session and item ids in requests, as the event
// contract bounds them (schemas.MaxIDLen).
const MaxIDLen = 128

func (c *APIConfig) validate() error {
	if c.MaxK == 0 {
		c.MaxK = 100
	}
	if c.DefaultK == 0 {
		c.DefaultK = min(10, max(1, c.MaxK))
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = 2 * time.Second
	}
	if c.StatusTimeout == 0 {
		c.StatusTimeout = 2 * time.Second
	}
	if c.ReadScoreTimeout == 0 {
		c.ReadScoreTimeout = defaultReadScoreTimeout
	}
	if c.Model == (model.Params{}) {
		c.Model = model.DefaultParams()
	}
	if err := c.Model.Validate(); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	switch {
	case c.MaxK < 0:
		return fmt.Errorf("api: max k must be positive, got %d", c.MaxK)
	case c.DefaultK < 0 || c.DefaultK > c.MaxK:
		return fmt.Errorf("api: default k must be between 1 and max k %d, got %d", c.MaxK, c.DefaultK)
	case c.StoreTimeout < 0:
		return fmt.Errorf("api: store timeout must be positive, got %s", c.StoreTimeout)
	case c.ReadScoreTimeout < 0:
		return fmt.Errorf("api: read score timeout must be positive, got %s", c.ReadScoreTimeout)
	case c.StatusTimeout < 0:
		return fmt.Errorf("api: status timeout must be positive, got %s", c.StatusTimeout)
	case c.Thresholds.MaxLagRecords < 0 || c.Thresholds.MaxLagTime < 0 || c.Thresholds.BatchInterval < 0:
		return fmt.Errorf("api: status thresholds must not be negative, got %+v", c.Thresholds)
	}
	return nil
}

// APIDeps are what an API is built from besides its configuration.
type APIDeps struct {
	// Store is the serving store read by every endpoint. Required; the API
	// does not close it.
	Store store.Store
	// Log receives the API's logs. Default: discard.
	Log *slog.Logger
	// StatusSources report the freshness of other layers at /v1/status.
	// More can be added with AddStatusSource.
	StatusSources []StatusSource
	// Now is the clock staleness is measured against. Default: time.Now.
	Now func() time.Time
	// Explainer explains speed items with explain=true (in dev, the
	// in-process speed layer). Nil: their explanation says the inputs are
	// not available here.
	Explainer SessionExplainer
	// Scorer scores a session's real-time recommendations when they are
	// read (readscore; in dev the in-process speed layer, in serve the
	// speed members over HTTP). Nil: the stored views are answered.
	Scorer readscore.Scorer
}

// API serves the read endpoints of the serving layer. It is safe for
// concurrent use.
type API struct {
	cfg   APIConfig
	store store.Store
	log   *slog.Logger
	now   func() time.Time
	m     *apiMetrics

	started time.Time

	mu      sync.RWMutex
	sources []StatusSource
	faults  []FaultFunc

	statusMu   sync.Mutex // guards the status evaluation and its cache
	lastStatus Status
	statusAt   time.Time
	lastGood   map[int]goodReport // by index in sources; see carryForward

	health storeHealth

	explainer SessionExplainer
	scorer    readscore.Scorer
	readWin   readWindow
}

// NewAPI returns the read API over deps.Store.
func NewAPI(cfg APIConfig, deps APIDeps) (*API, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil {
		return nil, errors.New("api: store is required")
	}
	a := &API{
		cfg:     cfg,
		store:   deps.Store,
		log:     deps.Log,
		now:     deps.Now,
		m:       newAPIMetrics(),
		sources: append([]StatusSource(nil), deps.StatusSources...),

		explainer: deps.Explainer,
		scorer:    deps.Scorer,
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.started = a.now()
	return a, nil
}

// Routes of the read API, as mounted by Mount. Recorded as the handler label
// of lambdarec_http_request_duration_seconds.
const (
	RouteRecommendations = "GET /v1/recommendations"
	RouteSimilar         = "GET /v1/items/{item_id}/similar"
	RouteStatus          = "GET /v1/status"
	RouteOpenAPI         = "GET /openapi.json"
)

// Mount registers the API's metrics on s's registry and mounts its routes on
// s. Other methods on these paths get JSON 405 errors from the server.
func (a *API) Mount(s *Server) error {
	if err := a.m.register(s.Registry()); err != nil {
		return err
	}
	if err := s.Registry().Register(statusCollector{a}); err != nil {
		return fmt.Errorf("register status metrics: %w", err)
	}
	s.AddCheck(Check{Name: "store", Func: a.storeHealth})
	for pattern, h := range a.routes() {
		s.Handle(pattern, h)
	}
	return nil
}

func (a *API) routes() map[string]http.Handler {
	return map[string]http.Handler{
		RouteRecommendations: http.HandlerFunc(a.handleRecommendations),
		RouteSimilar:         http.HandlerFunc(a.handleSimilar),
		RouteStatus:          http.HandlerFunc(a.handleStatus),
		RouteOpenAPI:         http.HandlerFunc(serveOpenAPI),
	}
}

//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the OpenAPI 3 document of lambdarec's HTTP API, as served
// at /openapi.json.
func OpenAPI() []byte { return append([]byte(nil), openAPIDoc...) }

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(openAPIDoc)
}

// storeError answers 503 for a failed store read. The store being slow or
// down is not the client's fault; its details stay in the log.
func (a *API) storeError(w http.ResponseWriter, r *http.Request, op string, err error) {
	a.m.storeErrors.WithLabelValues(op).Inc()
	if r.Context().Err() != nil {
		// The client went away; nobody reads the answer.
		a.log.Debug("store read abandoned", "op", op, "err", err)
	} else {
		a.log.Warn("store read failed", "op", op, "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Retry-After", "1")
	WriteError(w, http.StatusServiceUnavailable, Error{Code: CodeStoreUnavailable, Message: "the serving store is unavailable; retry later"})
}

func (a *API) storeContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), a.cfg.StoreTimeout)
}

// staleness is now − t in seconds, never negative; 0 when t is unknown.
func staleness(now, t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return max(0, now.Sub(t).Seconds())
}
