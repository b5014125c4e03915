package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// ErrNotConnected is wrapped by the errors of a store opened with
// Config.Background whose server has not answered yet.
var ErrNotConnected = errors.New("clickhouse store: not connected yet")

// initAttemptTimeout bounds one background connection attempt (ping, current
// database, migration).
const initAttemptTimeout = 30 * time.Second

// firstAttemptTimeout bounds the attempt New makes before it returns in
// Background mode (a server that drops packets delays the start this long).
const firstAttemptTimeout = 10 * time.Second

// connectInBackground runs init until it succeeds or the store is closed,
// backing off between attempts (0.1 s doubling, ±50% jitter, at most 10 s
// apart), and logs each failure (at most one line per attempt, so a few lines
// in the first seconds and then one per 10 s) and the recovery. Until an
// attempt of its own ends, calls fail with first, the error of New's
// attempt.
func (s *Store) connectInBackground(first error) {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopInit, s.initDone = cancel, make(chan struct{})
	s.initErr.Store(&first)
	go func() {
		defer close(s.initDone)
		bo := backoff.NewExponentialBackOff()
		bo.InitialInterval, bo.MaxInterval = 100*time.Millisecond, 10*time.Second
		for attempt := 1; ; attempt++ {
			actx, acancel := context.WithTimeout(ctx, initAttemptTimeout)
			err := s.init(actx)
			acancel()
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				s.connected.Store(true)
				s.initErr.Store(nil)
				if attempt > 1 {
					s.log.Info("clickhouse store connected", "attempts", attempt)
				}
				return
			}
			s.initErr.Store(&err)
			d := bo.NextBackOff()
			s.log.Warn("clickhouse store not reachable; retrying", "err", err, "attempt", attempt, "retry_in", d)
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
	}()
}

// notConnected is the error of a call made before the background connection
// succeeded.
func (s *Store) notConnected() error {
	if p := s.initErr.Load(); p != nil {
		return fmt.Errorf("%w: %w", ErrNotConnected, *p)
	}
	return ErrNotConnected
}
