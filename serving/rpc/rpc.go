// Package rpc owns lambdarec's RPC API: lambdarec.v1.RecommendationService
// (schemas/recommendation_service.proto) served by connect-go as gRPC,
// gRPC-Web and Connect on the HTTP server's own port (HTTP/2 without TLS,
// h2c, or over TLS), with gRPC server reflection and the standard health
// service grpc.health.v1.Health.
//
// It is a second front end of the same logic, not a second implementation:
// GetRecommendations, GetSimilarItems and GetStatus call the read API's
// functions (serving.API.Recommendations, SimilarItems, Status) and
// IngestEvents the collector's (collector.Collector.Ingest), so validation,
// the merge, metrics and the collector's guarantee — an answer only once
// Kafka acknowledged every event — are those of the HTTP API. API keys are
// the HTTP API's (serving/auth), checked by a connect interceptor with the
// same scopes: read for recommendations and similar items, admin for status,
// ingest for events. Reflection and health are open, like /openapi.json and
// /readyz. Health answers SERVING exactly when /readyz answers 200.
package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"

	"github.com/lambdarec/lambdarec/schemas"
	"github.com/lambdarec/lambdarec/schemas/schemasconnect"
	"github.com/lambdarec/lambdarec/serving"
	"github.com/lambdarec/lambdarec/serving/auth"
	"github.com/lambdarec/lambdarec/serving/collector"
)

// ServiceName is the fully qualified name of the RPC service.
const ServiceName = schemasconnect.RecommendationServiceName

// Scopes are the API key scopes of the service's methods, by procedure.
var Scopes = map[string]auth.Scope{
	schemasconnect.RecommendationServiceGetRecommendationsProcedure: auth.ScopeRead,
	schemasconnect.RecommendationServiceGetSimilarItemsProcedure:    auth.ScopeRead,
	schemasconnect.RecommendationServiceGetStatusProcedure:          auth.ScopeAdmin,
	schemasconnect.RecommendationServiceIngestEventsProcedure:       auth.ScopeIngest,
}

// Config configures a Service.
type Config struct {
	// MaxMessageBytes bounds a request message; a larger one is refused
	// with RESOURCE_EXHAUSTED. Set it to serve.max_body_bytes. Default:
	// 1 MiB.
	MaxMessageBytes int64
}

// Deps are what a Service is built from besides its configuration.
type Deps struct {
	// API answers the reads. Required.
	API *serving.API
	// Collector takes IngestEvents; nil: IngestEvents answers
	// UNIMPLEMENTED (a server without a Kafka topic).
	Collector *collector.Collector
	// Auth checks API keys; nil: every method is open.
	Auth *auth.Authenticator
	// Ready is the readiness the health service reports (the HTTP server's
	// Ready). Required.
	Ready func(ctx context.Context) error
	// Log receives the service's logs. Default: discard.
	Log *slog.Logger
}

// Service is the RPC API. Mount it on the HTTP server.
type Service struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
}

// New returns the RPC API over deps.
func New(cfg Config, deps Deps) (*Service, error) {
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = 1 << 20
	}
	switch {
	case cfg.MaxMessageBytes < 0:
		return nil, fmt.Errorf("rpc: max message bytes must be positive, got %d", cfg.MaxMessageBytes)
	case deps.API == nil:
		return nil, errors.New("rpc: the read API is required")
	case deps.Ready == nil:
		return nil, errors.New("rpc: a readiness check is required")
	}
	s := &Service{cfg: cfg, deps: deps, log: deps.Log}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

// Mount mounts the service, reflection and health on srv, outside its HTTP
// guard: the service checks API keys itself (see the package doc).
func (s *Service) Mount(srv *serving.Server) {
	opts := []connect.HandlerOption{
		connect.WithReadMaxBytes(int(s.cfg.MaxMessageBytes)),
		connect.WithInterceptors(connect.UnaryInterceptorFunc(s.authorize)),
	}
	srv.HandleAuthorized(schemasconnect.NewRecommendationServiceHandler(handler{s}, opts...))
	reflector := grpcreflect.NewStaticReflector(ServiceName, grpchealth.HealthV1ServiceName)
	srv.HandleAuthorized(grpcreflect.NewHandlerV1(reflector))
	srv.HandleAuthorized(grpcreflect.NewHandlerV1Alpha(reflector))
	srv.HandleAuthorized(grpchealth.NewHandler(checker{s}))
}

// authorize checks the API key of a call against its method's scope.
func (s *Service) authorize(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if s.deps.Auth == nil {
			return next(ctx, req)
		}
		need, ok := Scopes[req.Spec().Procedure]
		if !ok {
			need = auth.ScopeAdmin // a method added without a scope is closed
		}
		if err := s.deps.Auth.Check(req.Header(), need); err != nil {
			code := connect.CodeUnauthenticated
			if d := (*auth.Denied)(nil); errors.As(err, &d) && d.Status == http.StatusForbidden {
				code = connect.CodePermissionDenied
			}
			return nil, connect.NewError(code, err)
		}
		return next(ctx, req)
	}
}

// checker answers grpc.health.v1 from the server's readiness, for the whole
// server ("") and for the service by name.
type checker struct{ s *Service }

func (c checker) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	if req.Service != "" && req.Service != ServiceName {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %q", req.Service))
	}
	if err := c.s.deps.Ready(ctx); err != nil {
		c.s.log.Debug("rpc health not serving", "err", err)
		return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}

// handler implements the service's methods.
type handler struct{ s *Service }

func (h handler) GetRecommendations(ctx context.Context, req *connect.Request[schemas.GetRecommendationsRequest]) (*connect.Response[schemas.GetRecommendationsResponse], error) {
	m := req.Msg
	out, err := h.s.deps.API.Recommendations(ctx, serving.RecommendationsRequest{
		UserID: m.GetUserId(), SessionID: m.GetSessionId(), K: int(m.GetK()), Explain: m.GetExplain(),
	})
	if err != nil {
		return nil, readError(ctx, err)
	}
	return connect.NewResponse(recommendationsMessage(out)), nil
}

func (h handler) GetSimilarItems(ctx context.Context, req *connect.Request[schemas.GetSimilarItemsRequest]) (*connect.Response[schemas.GetSimilarItemsResponse], error) {
	out, err := h.s.deps.API.SimilarItems(ctx, serving.SimilarRequest{ItemID: req.Msg.GetItemId(), K: int(req.Msg.GetK())})
	if err != nil {
		return nil, readError(ctx, err)
	}
	return connect.NewResponse(similarMessage(out)), nil
}

func (h handler) GetStatus(ctx context.Context, _ *connect.Request[schemas.GetStatusRequest]) (*connect.Response[schemas.GetStatusResponse], error) {
	st := h.s.deps.API.Status(ctx)
	if err := ctx.Err(); err != nil {
		return nil, contextError(err)
	}
	msg, err := statusMessage(st)
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(msg), nil
}

func (h handler) IngestEvents(ctx context.Context, req *connect.Request[schemas.IngestEventsRequest]) (*connect.Response[schemas.IngestEventsResponse], error) {
	if h.s.deps.Collector == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errors.New("this server takes no events"))
	}
	n, err := h.s.deps.Collector.Ingest(ctx, req.Msg.GetEvents())
	if err != nil {
		var ie *collector.IngestError
		if !errors.As(err, &ie) {
			return nil, connect.NewError(connect.CodeInternal, err)
		}
		return nil, withDetails(statusCode(ie.Status, ie.Err.Code), ie.Err)
	}
	return connect.NewResponse(&schemas.IngestEventsResponse{Accepted: int32(n)}), nil
}

// readError maps an error of the read API to a gRPC status.
func readError(ctx context.Context, err error) error {
	var re *serving.RequestError
	switch {
	case errors.As(err, &re):
		return withDetails(connect.CodeInvalidArgument, re.Err)
	case ctx.Err() != nil:
		return contextError(ctx.Err())
	case errors.Is(err, serving.ErrStoreUnavailable):
		return connect.NewError(connect.CodeUnavailable, errors.New("the serving store is unavailable; retry later"))
	}
	return connect.NewError(connect.CodeInternal, err)
}

func contextError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return connect.NewError(connect.CodeDeadlineExceeded, err)
	}
	return connect.NewError(connect.CodeCanceled, err)
}

// statusCode is the gRPC code of an HTTP refusal of the collector.
func statusCode(status int, code string) connect.Code {
	switch {
	case code == collector.CodeOverloaded:
		return connect.CodeResourceExhausted
	case status == http.StatusServiceUnavailable:
		return connect.CodeUnavailable
	case status == http.StatusRequestEntityTooLarge:
		return connect.CodeResourceExhausted
	case status >= 400 && status < 500:
		return connect.CodeInvalidArgument
	}
	return connect.CodeInternal
}

// withDetails is a gRPC error with the HTTP API's error code, field and
// index as metadata (lambdarec-error-code, -field, -index), so a client can
// branch on the same codes.
func withDetails(code connect.Code, e serving.Error) error {
	err := connect.NewError(code, errors.New(e.Message))
	meta := err.Meta()
	meta.Set("lambdarec-error-code", e.Code)
	if e.Field != "" {
		meta.Set("lambdarec-error-field", e.Field)
	}
	if e.Index != nil {
		meta.Set("lambdarec-error-index", fmt.Sprint(*e.Index))
	}
	return err
}
