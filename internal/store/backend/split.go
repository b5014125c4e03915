package backend

import (
	"context"
	"errors"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// split is a serving store whose batch view lives in one backend and whose
// real-time view lives in another (store.sessions: redis beside
// store.backend: clickhouse): every request naming a session then costs one
// Redis read instead of a ClickHouse query, and a session read is exact
// (Redis holds the newest version, no per-replica cache to keep in step).
type split struct {
	store.Store             // the batch view (and its session methods, unused)
	sessions    store.Store // the real-time view
}

func (s *split) UpsertSession(ctx context.Context, sv store.SessionView) error {
	return s.sessions.UpsertSession(ctx, sv)
}

func (s *split) UpsertSessions(ctx context.Context, ss []store.SessionView) error {
	return s.sessions.UpsertSessions(ctx, ss)
}

func (s *split) Session(ctx context.Context, id string) (store.SessionView, bool, error) {
	return s.sessions.Session(ctx, id)
}

func (s *split) ExplainedSession(ctx context.Context, id string) (store.SessionView, bool, error) {
	return s.sessions.ExplainedSession(ctx, id)
}

func (s *split) ExpireSessions(ctx context.Context, cutoff time.Time) (int64, error) {
	return s.sessions.ExpireSessions(ctx, cutoff)
}

// ExpireHot applies the hot retention to both: the sessions, and the batch
// backend's own hot tier when it has one (the ClickHouse publish history).
func (s *split) ExpireHot(ctx context.Context, cutoff time.Time) (int64, error) {
	if _, err := s.sessions.ExpireSessions(ctx, cutoff); err != nil {
		return 0, err
	}
	if h, ok := s.Store.(interface {
		ExpireHot(context.Context, time.Time) (int64, error)
	}); ok {
		return h.ExpireHot(ctx, cutoff)
	}
	return 0, nil
}

// Ping checks both servers (serving.Pinger).
func (s *split) Ping(ctx context.Context) error {
	var errs []error
	for _, st := range []store.Store{s.Store, s.sessions} {
		if p, ok := st.(interface{ Ping(context.Context) error }); ok {
			errs = append(errs, p.Ping(ctx))
		}
	}
	return errors.Join(errs...)
}

func (s *split) Close() error { return errors.Join(s.sessions.Close(), s.Store.Close()) }

// ServerCPU is the sessions' Redis server's CPU time, for bench serve.
func (s *split) ServerCPU(ctx context.Context) (time.Duration, error) {
	if c, ok := s.sessions.(interface {
		ServerCPU(context.Context) (time.Duration, error)
	}); ok {
		return c.ServerCPU(ctx)
	}
	return 0, nil
}

// SessionStore is the store holding the real-time view, for its statistics
// (bench serve).
func (s *split) SessionStore() store.Store { return s.sessions }
