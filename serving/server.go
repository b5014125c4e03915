// Package serving owns lambdarec's HTTP API: the server that the serving
// layer's endpoints are mounted on, its JSON error envelope
// ({"error": {"code", "message", …}}), the /healthz and /readyz probes, the
// Prometheus /metrics endpoint, and request instrumentation; and the read
// API (api.go: GET /v1/recommendations merging the batch and real-time views
// by recency, /v1/items/{item_id}/similar, /v1/status, /openapi.json),
// mounted with API.Mount. Other endpoints live in their own packages (the
// event collector in serving/collector) and are mounted with Server.Handle.
package serving

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lambdarec/lambdarec/internal/config"
)

// Check is one readiness check of /readyz, for example "the Kafka topic is
// reachable". Func should return quickly; it is given a context bounded by
// CheckTimeout.
type Check struct {
	Name string
	Func func(ctx context.Context) error
}

// CheckTimeout bounds each readiness check.
const CheckTimeout = 2 * time.Second

// HTTP server timeouts besides serve.read_timeout and serve.write_timeout.
// A connection that sends no request within readHeaderTimeout, or stays idle
// between requests for idleTimeout, is closed: idle clients cannot hold
// connections (and file handles) for long.
const (
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = time.Minute
)

// Deps are what a Server is built from besides its configuration.
type Deps struct {
	// Log receives the server's logs. Default: discard.
	Log *slog.Logger
	// Registry is served at /metrics and receives the HTTP metrics. Default:
	// a new registry with the Go runtime and process collectors.
	Registry *prometheus.Registry
	// Checks are the readiness checks of /readyz. More can be added with
	// AddCheck before the server runs.
	Checks []Check
}

// Server is lambdarec's HTTP server. Build it with NewServer, mount endpoints
// with Handle, then Run it.
type Server struct {
	cfg      config.Serve
	log      *slog.Logger
	reg      *prometheus.Registry
	mux      *http.ServeMux
	checks   []Check
	draining atomic.Bool
	metrics  *httpMetrics
	conns    atomic.Pointer[connLimiter] // of the running Serve
	guard    Guard                       // set by SetGuard; nil: every endpoint open
	runners  []func(context.Context) error
	tls      *tls.Config // set by SetTLS; nil: plain HTTP
}

// Guard decides who may call an endpoint (serving/auth implements it with
// API keys). Authorize runs after routing, so r.Pattern names the route; it
// returns true to let r through, or answers r itself (401, 403) and returns
// false. A Guard with a Run(ctx) error method is run alongside the server,
// for example to reload its keys.
type Guard interface {
	Authorize(w http.ResponseWriter, r *http.Request) bool
}

// NewServer returns a server for cfg with /healthz, /readyz and /metrics
// mounted.
func NewServer(cfg config.Serve, deps Deps) (*Server, error) {
	if cfg.Addr == "" {
		return nil, errors.New("serving: listen address is required")
	}
	if cfg.ShutdownTimeout <= 0 {
		return nil, fmt.Errorf("serving: shutdown timeout must be positive, got %s", cfg.ShutdownTimeout)
	}
	if cfg.ReadTimeout <= 0 || cfg.WriteTimeout <= 0 {
		return nil, fmt.Errorf("serving: read and write timeouts must be positive, got %s and %s", cfg.ReadTimeout, cfg.WriteTimeout)
	}
	if cfg.MaxConnections < 1 {
		return nil, fmt.Errorf("serving: max connections must be at least 1, got %d", cfg.MaxConnections)
	}
	s := &Server{
		cfg:    cfg,
		log:    deps.Log,
		reg:    deps.Registry,
		mux:    http.NewServeMux(),
		checks: append([]Check(nil), deps.Checks...),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
		if err := s.reg.Register(collectors.NewGoCollector()); err != nil {
			return nil, fmt.Errorf("register go collector: %w", err)
		}
		if err := s.reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
			return nil, fmt.Errorf("register process collector: %w", err)
		}
	}
	m, err := newHTTPMetrics(s.reg)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	if err := s.registerConnMetrics(); err != nil {
		return nil, err
	}
	s.Handle("GET /healthz", http.HandlerFunc(s.healthz))
	s.Handle("GET /readyz", http.HandlerFunc(s.readyz))
	s.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
		Registry:          s.reg,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		EnableOpenMetrics: true,
	}))
	return s, nil
}

// Handle mounts h at pattern (a net/http ServeMux pattern such as
// "/v1/events" or "GET /v1/items/{item_id}/similar"). Requests that match no
// pattern, or match one only by path, get JSON 404 and 405 errors. Handle
// panics on a conflicting pattern, like http.ServeMux.Handle.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g := s.guard; g != nil && !g.Authorize(w, r) {
			return
		}
		h.ServeHTTP(w, r)
	}))
}

// HandleAuthorized mounts h at pattern like Handle but outside the Guard: h
// authorizes each request itself. The RPC API (serving/rpc) is mounted so,
// checking API keys in a connect interceptor so that a refusal is a gRPC
// status its clients understand, not an HTTP 401.
func (s *Server) HandleAuthorized(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// SetGuard puts every endpoint, mounted before or after, behind g. Call it
// before Run.
func (s *Server) SetGuard(g Guard) { s.guard = g }

// SetTLS serves HTTPS with c instead of plain HTTP. Call it before Run.
func (s *Server) SetTLS(c *tls.Config) { s.tls = c }

// AddRunner runs f alongside the server (from Serve until it returns), for
// example the /ui page's status sampler. Call it before Run. An error from f
// is logged; the server keeps serving.
func (s *Server) AddRunner(f func(ctx context.Context) error) { s.runners = append(s.runners, f) }

// AddCheck adds a readiness check. Call it before Run.
func (s *Server) AddCheck(c Check) { s.checks = append(s.checks, c) }

// Registry is the registry served at /metrics; endpoints register their
// metrics on it.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Handler returns the server's root handler: routing, instrumentation,
// panic recovery and JSON errors for unrouted requests.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Run listens on the configured address and serves until ctx ends, then shuts
// down gracefully (see Serve).
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves HTTP on ln until ctx ends. At most serve.max_connections
// client connections are open at once: at the limit the connection idle
// longest is closed to make room, or the newcomer when every connection is
// busy (see connLimiter), so idle clients can neither exhaust the process's
// file handles nor keep others out. When ctx ends,
// /readyz starts failing, the listener closes, and in-flight requests get up
// to the configured shutdown timeout to finish; connections still open after
// it are closed. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	addr := ln.Addr().String()
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	lim := newConnLimiter(ln, s.cfg.MaxConnections)
	s.conns.Store(lim)
	ln = lim
	if r, ok := s.guard.(interface{ Run(context.Context) error }); ok {
		gctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := r.Run(gctx); err != nil {
				s.log.Error("http guard stopped", "err", err)
			}
		}()
		defer func() { stop(); <-done }()
	}
	for _, f := range s.runners {
		rctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := f(rctx); err != nil {
				s.log.Error("http server runner stopped", "err", err)
			}
		}()
		defer func() { stop(); <-done }()
	}
	// HTTP/2 without TLS (h2c) too, for gRPC clients on the plain port;
	// over TLS, HTTP/2 is negotiated by ALPN.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	hs := &http.Server{
		Protocols:         &protocols,
		ConnState:         lim.connState,
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log.Info("http server listening", "addr", addr, "tls", s.tls != nil, "auth", s.guard != nil)

	select {
	case err := <-errc:
		return fmt.Errorf("serve http on %s: %w", addr, err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("http server stopping", "addr", addr, "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	<-errc // http.ErrServerClosed, returned as soon as Shutdown starts
	if err != nil {
		return errors.Join(fmt.Errorf("shut down http server on %s: %w", addr, err), hs.Close())
	}
	s.log.Info("http server stopped", "addr", addr)
	return nil
}

// registerConnMetrics exports the connections of the running Serve.
func (s *Server) registerConnMetrics() error {
	read := func(f func(*connLimiter) float64) func() float64 {
		return func() float64 {
			l := s.conns.Load()
			if l == nil {
				return 0
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			return f(l)
		}
	}
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "lambdarec_http_connections_open",
			Help: "Client connections held open (bounded by serve.max_connections).",
		}, read(func(l *connLimiter) float64 { return float64(len(l.conns)) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "lambdarec_http_connections_evicted_total",
			Help: "Idle client connections closed to make room for a new one at serve.max_connections.",
		}, read(func(l *connLimiter) float64 { return float64(l.evicted) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "lambdarec_http_connections_refused_total",
			Help: "New client connections closed at once because serve.max_connections were all busy.",
		}, read(func(l *connLimiter) float64 { return float64(l.refused) })),
	} {
		if err := s.reg.Register(c); err != nil {
			return fmt.Errorf("register connection metrics: %w", err)
		}
	}
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when every check passes, else 503 naming the failures.
// A draining server is never ready, so load balancers stop sending to it.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		WriteError(w, http.StatusServiceUnavailable, Error{Code: CodeNotReady, Message: "shutting down"})
		return
	}
	checks, failed := s.runChecks(r.Context())
	if len(failed) > 0 {
		WriteError(w, http.StatusServiceUnavailable, Error{Code: CodeNotReady, Message: strings.Join(failed, "; ")})
		return
	}
	WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": checks})
}

// Ready reports what /readyz answers: nil when the server is not draining
// and every check passes, else an error naming the failures. The RPC
// API's health service answers from it.
func (s *Server) Ready(ctx context.Context) error {
	if s.draining.Load() {
		return errors.New("shutting down")
	}
	if _, failed := s.runChecks(ctx); len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

// runChecks runs every readiness check, each bounded by CheckTimeout.
func (s *Server) runChecks(ctx context.Context) (passed map[string]string, failed []string) {
	passed = make(map[string]string, len(s.checks))
	for _, c := range s.checks {
		cctx, cancel := context.WithTimeout(ctx, CheckTimeout)
		err := c.Func(cctx)
		cancel()
		if err != nil {
			failed = append(failed, c.Name+": "+err.Error())
			continue
		}
		passed[c.Name] = "ok"
	}
	return passed, failed
}
