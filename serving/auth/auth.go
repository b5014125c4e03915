// Package auth owns who may call lambdarec's HTTP API and how the connection
// is secured: API keys with scopes read from a keys file (serve.auth), the
// scope each endpoint requires, and HTTPS with a certificate reloaded when its
// files change (serve.tls).
//
// Invariants:
//   - keys are held only as SHA-256 digests, compared in constant time, and
//     never logged, counted by value or echoed in errors;
//   - a keys file that cannot be read or parsed never empties the key set:
//     the previous keys stay in force, the failure shows in
//     lambdarec_auth_keys_file_ok and in a log line repeated at most once a
//     minute; a file broken at startup is an error of New;
//   - /healthz, /readyz and /openapi.json are open; any route the policy does
//     not name requires admin, so a new endpoint is closed until placed.
package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lambdarec/lambdarec/serving"
)

// Error codes of rejected requests.
const (
	// CodeUnauthorized: no API key, or one that is not in the keys file (401).
	CodeUnauthorized = "unauthorized"
	// CodeForbidden: the key lacks the scope the endpoint requires (403).
	CodeForbidden = "forbidden"
)

// Policy maps a route pattern (as mounted on serving.Server) to the scope it
// requires; 0 means open.
type Policy map[string]Scope

// DefaultPolicy is the scope of every endpoint of `lambdarec serve`.
func DefaultPolicy() Policy {
	return Policy{
		"/v1/events":                 ScopeIngest,
		serving.RouteRecommendations: ScopeRead,
		serving.RouteSimilar:         ScopeRead,
		serving.RouteStatus:          ScopeAdmin,
		"GET /metrics":               ScopeAdmin,
		"GET /healthz":               0,
		"GET /readyz":                0,
		serving.RouteOpenAPI:         0,
		// The /ui page's static files (serving/ui: RoutePage, RouteAsset)
		// hold no data; the JSON it reads (/ui/api/samples) needs admin,
		// like /v1/status, as every route not listed here.
		"GET /ui":             0,
		"GET /ui/{file}":      0,
		"GET /ui/api/samples": ScopeAdmin,
	}
}

// required is the scope of pattern: the policy's, else admin.
func (p Policy) required(pattern string) Scope {
	if s, ok := p[pattern]; ok {
		return s
	}
	return ScopeAdmin
}

// Config configures an Authenticator.
type Config struct {
	// KeysFile is the keys file (see ParseKeys). Required.
	KeysFile string
	// ReloadInterval is how often Run checks the file. Default: 5s.
	ReloadInterval time.Duration
	// Policy gives each route its scope. Default: DefaultPolicy().
	Policy Policy
}

// Deps are what an Authenticator is built from besides its configuration.
type Deps struct {
	// Log receives reload and denial logs. Default: discard.
	Log *slog.Logger
	// Registerer receives the lambdarec_auth_* metrics. Default: none.
	Registerer prometheus.Registerer
}

// errorLogEvery bounds how often the same keys-file failure is logged.
const errorLogEvery = time.Minute

// Authenticator checks the API key of each request against the keys file
// and the scope its route requires. It implements serving.Guard; Run keeps
// the keys current. It is safe for concurrent use.
type Authenticator struct {
	cfg  Config
	log  *slog.Logger
	m    *metrics
	keys atomic.Pointer[Keys]

	mu         sync.Mutex // reloads
	lastDigest [sha256.Size]byte
	// readDigest is the content read by the previous poll: a changed file
	// is taken only once two polls read the same content, so that a file
	// being rewritten in place (truncated, then written) is never taken
	// half-written — an empty file would revoke every key.
	readDigest [sha256.Size]byte
	lastErr    string
	lastLogged time.Time
}

var _ serving.Guard = (*Authenticator)(nil)

// New reads cfg.KeysFile; an unreadable or invalid file is an error.
func New(cfg Config, deps Deps) (*Authenticator, error) {
	if cfg.KeysFile == "" {
		return nil, errors.New("auth: keys file is required")
	}
	if cfg.ReloadInterval == 0 {
		cfg.ReloadInterval = 5 * time.Second
	}
	if cfg.ReloadInterval < 0 {
		return nil, fmt.Errorf("auth: reload interval must be positive, got %s", cfg.ReloadInterval)
	}
	if cfg.Policy == nil {
		cfg.Policy = DefaultPolicy()
	}
	a := &Authenticator{cfg: cfg, log: deps.Log, m: newMetrics()}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if deps.Registerer != nil {
		if err := a.m.register(deps.Registerer); err != nil {
			return nil, err
		}
	}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Keys returns the keys in force.
func (a *Authenticator) Keys() *Keys { return a.keys.Load() }

// Run re-reads the keys file every ReloadInterval until ctx ends. A failed
// reload keeps the previous keys (see Reload).
func (a *Authenticator) Run(ctx context.Context) error {
	t := time.NewTicker(a.cfg.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			_ = a.Reload() // reported in the metrics and the log
		}
	}
}

// Reload reads the keys file and, when its content changed, reads the same
// on the next poll and parses, swaps the keys in. When it cannot be read or parsed, the keys in force
// stay, lambdarec_auth_keys_file_ok becomes 0, and the error is logged (the
// same error at most once a minute) and returned.
func (a *Authenticator) Reload() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	b, err := os.ReadFile(a.cfg.KeysFile)
	if err != nil {
		return a.failed(fmt.Errorf("read api keys file: %w", err))
	}
	d := sha256.Sum256(b)
	if a.keys.Load() != nil && d == a.lastDigest && a.lastErr == "" {
		return nil // unchanged
	}
	if a.keys.Load() != nil && d != a.readDigest {
		a.readDigest = d
		return nil // changed: taken when the next poll reads the same
	}
	a.readDigest = d
	k, err := ParseKeys(bytes.NewReader(b))
	if err != nil {
		return a.failed(fmt.Errorf("parse api keys file %s: %w", a.cfg.KeysFile, err))
	}
	first := a.keys.Load() == nil
	a.keys.Store(k)
	a.lastDigest, a.lastErr = d, ""
	a.m.fileOK.Set(1)
	a.m.keys.Set(float64(k.Len()))
	a.m.reloads.WithLabelValues("ok").Inc()
	if first {
		a.log.Info("api keys loaded", "file", a.cfg.KeysFile, "keys", k.Len())
	} else {
		a.log.Info("api keys reloaded", "file", a.cfg.KeysFile, "keys", k.Len())
	}
	if k.Len() == 0 {
		a.log.Warn("api keys file has no keys: every guarded endpoint answers 401", "file", a.cfg.KeysFile)
	}
	return nil
}

// failed records a failed reload.
func (a *Authenticator) failed(err error) error {
	a.m.fileOK.Set(0)
	a.m.reloads.WithLabelValues("error").Inc()
	if a.keys.Load() == nil {
		return fmt.Errorf("auth: %w", err) // New fails
	}
	msg := err.Error()
	now := time.Now()
	if msg != a.lastErr || now.Sub(a.lastLogged) >= errorLogEvery {
		a.log.Error("api keys file rejected; the previous keys stay in force", "file", a.cfg.KeysFile, "keys", a.keys.Load().Len(), "err", err)
		a.lastLogged = now
	}
	a.lastErr = msg
	return err
}

// Authorize lets r through when its route is open or its key has the
// route's scope; otherwise it answers 401 or 403 itself and returns false.
func (a *Authenticator) Authorize(w http.ResponseWriter, r *http.Request) bool {
	err := a.Check(r.Header, a.cfg.Policy.required(r.Pattern))
	if err == nil {
		return true
	}
	d := err.(*Denied)
	w.Header().Set("WWW-Authenticate", d.Challenge)
	serving.WriteError(w, d.Status, d.Err)
	return false
}

// Denied is a request refused for its API key: Status is 401 (no key, or
// an unknown one) or 403 (a key without the scope), Err the JSON error and
// Challenge the WWW-Authenticate header of the HTTP answer.
type Denied struct {
	Status    int
	Err       serving.Error
	Challenge string
}

func (d *Denied) Error() string { return d.Err.Message }

// Check checks the API key in h (Authorization: Bearer KEY, else X-API-Key)
// against need, and counts a refusal. It returns nil when need is 0 (open)
// or the key has the scope, else a *Denied. The HTTP endpoints are checked
// by Authorize; the RPC API calls Check from its interceptor.
func (a *Authenticator) Check(h http.Header, need Scope) error {
	if need == 0 {
		return nil
	}
	key, present := requestKey(h)
	if !present {
		a.m.denied.WithLabelValues("missing").Inc()
		return &Denied{Status: http.StatusUnauthorized, Challenge: `Bearer realm="lambdarec"`, Err: serving.Error{Code: CodeUnauthorized,
			Message: "an API key is required: send Authorization: Bearer KEY or X-API-Key: KEY"}}
	}
	scopes, ok := a.keys.Load().Lookup(key)
	if !ok {
		a.m.denied.WithLabelValues("unknown").Inc()
		return &Denied{Status: http.StatusUnauthorized, Challenge: `Bearer realm="lambdarec", error="invalid_token"`,
			Err: serving.Error{Code: CodeUnauthorized, Message: "the API key is not valid"}}
	}
	if scopes&need == 0 {
		a.m.denied.WithLabelValues("scope").Inc()
		return &Denied{Status: http.StatusForbidden, Challenge: `Bearer realm="lambdarec", error="insufficient_scope", scope="` + need.String() + `"`,
			Err: serving.Error{Code: CodeForbidden, Message: "the API key lacks the " + need.String() + " scope"}}
	}
	return nil
}

// requestKey is the key in the request headers hdr: Authorization: Bearer
// KEY, else X-API-Key. present is true when either header is given, even
// malformed (a malformed one yields an empty key, which matches nothing).
func requestKey(hdr http.Header) (key string, present bool) {
	if h := hdr.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", true
		}
		return strings.TrimSpace(tok), true
	}
	if h := hdr.Get("X-API-Key"); h != "" {
		return strings.TrimSpace(h), true
	}
	return "", false
}

type metrics struct {
	keys    prometheus.Gauge
	fileOK  prometheus.Gauge
	reloads *prometheus.CounterVec
	denied  *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		keys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lambdarec_auth_keys",
			Help: "API keys in force.",
		}),
		fileOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lambdarec_auth_keys_file_ok",
			Help: "1 when the last read of the API keys file succeeded; 0 when it failed and the previous keys stay in force.",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdarec_auth_keys_reloads_total",
			Help: "Reads of a changed or broken API keys file, by result (ok, error).",
		}, []string{"result"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lambdarec_auth_denied_total",
			Help: "Requests refused, by reason: missing (no key, 401), unknown (401), scope (403).",
		}, []string{"reason"}),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.keys, m.fileOK, m.reloads, m.denied} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register auth metrics: %w", err)
		}
	}
	return nil
}
