package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/lambdarec/lambdarec/batch/archive"
	"log/slog"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/lambdarec/lambdarec/serving"
)

// supervisor runs the roles of `lambdarec dev`. A role that fails (an
// archive whose disk is full, say) does not end the process: it is reported
// down at /v1/status under its layer, with the error, and restarted with
// exponential backoff and jitter (1 s doubling to 1 min) while the others —
// serve among them — keep going. Only a critical role (serve: without it
// nothing answers) ends the process when it fails.
type supervisor struct {
	log *slog.Logger

	mu    sync.Mutex
	roles map[string]*roleState
}

// roleState is what the supervisor knows of one role.
type roleState struct {
	layer    string // the /v1/status layer its faults belong to
	err      error  // the last failure; nil while it runs without one
	failedAt time.Time
	restarts int
	retryAt  time.Time
}

// role is one role of dev.
type role struct {
	name string
	// layer is the /v1/status layer the role serves ("archive", "speed",
	// "batch", …).
	layer string
	run   func(context.Context) error
	// critical roles end the process when they fail.
	critical bool
	// mayFinish roles may return nil before the context ends (the
	// generator with a count); others are restarted.
	mayFinish bool
}

func newSupervisor(log *slog.Logger) *supervisor {
	return &supervisor{log: log, roles: map[string]*roleState{}}
}

// run runs roles until ctx ends or a critical role fails; it returns the
// critical role's error, nil otherwise.
func (s *supervisor) run(ctx context.Context, roles []role) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, r := range roles {
		s.mu.Lock()
		s.roles[r.name] = &roleState{layer: r.layer}
		s.mu.Unlock()
		wg.Go(func() {
			// The role's goroutines, and those they start, carry its name
			// as the profile label "role": `dev --pprof` splits the CPU by
			// role (go tool pprof -tagfocus role=speed, -tags).
			pprof.Do(ctx, pprof.Labels("role", r.name), func(ctx context.Context) {
				if err := s.keep(ctx, r); err != nil {
					cancel(err)
				}
			})
		})
	}
	<-ctx.Done()
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// keep runs r until ctx ends, restarting it after failures; it returns an
// error only for a critical role.
func (s *supervisor) keep(ctx context.Context, r role) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.Multiplier, bo.MaxInterval = time.Second, 2, time.Minute
	for {
		start := time.Now()
		// A restarted role that keeps running for recoverAfter is healthy
		// again.
		healthy := time.AfterFunc(recoverAfter, func() { s.recovered(r.name) })
		err := r.run(ctx)
		healthy.Stop()
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			if r.mayFinish {
				s.set(r.name, func(st *roleState) { st.err = nil })
				return nil
			}
			err = errors.New("stopped unexpectedly")
		}
		if r.critical {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		if time.Since(start) > 2*bo.MaxInterval {
			bo.Reset() // it ran well for a while: start the backoff over
		}
		wait := bo.NextBackOff()
		s.set(r.name, func(st *roleState) {
			st.err, st.failedAt, st.retryAt = err, time.Now(), time.Now().Add(wait)
			st.restarts++
		})
		s.log.Error("role failed; restarting it after a backoff while the other roles go on",
			"role", r.name, "err", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		s.log.Info("role restarting", "role", r.name)
	}
}

func (s *supervisor) set(name string, f func(*roleState)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.roles[name]; ok {
		f(st)
	}
}

// FaultCodeRoleFailed is the /v1/status reason of a dev role that failed and
// waits to be restarted.
const FaultCodeRoleFailed = "role_failed"

// FaultCodeArchiveFailing is the /v1/status reason of an archive whose
// flushes fail and are retried in place (the role itself keeps running).
const FaultCodeArchiveFailing = "archive_failing"

// archiveFaults reports an archive whose flushes keep failing as down.
func archiveFaults(a *archive.Archiver) serving.FaultFunc {
	return func(context.Context) ([]serving.Fault, error) {
		err := a.FlushError()
		if err == nil {
			return nil, nil
		}
		return []serving.Fault{{Layer: "archive", Code: FaultCodeArchiveFailing, State: serving.StateDown,
			Message: "archive flushes fail and are retried with backoff: " + err.Error()}}, nil
	}
}

// faults reports each failed role as a fault of its layer, down.
func (s *supervisor) faults(context.Context) ([]serving.Fault, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.roles))
	for n := range s.roles {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []serving.Fault
	for _, n := range names {
		st := s.roles[n]
		if st.err == nil {
			continue
		}
		out = append(out, serving.Fault{
			Layer: st.layer, Code: FaultCodeRoleFailed, State: serving.StateDown,
			Message: fmt.Sprintf("role %s failed: %v; restart %d scheduled", n, st.err, st.restarts),
			Details: map[string]any{"role": n, "failed_at": st.failedAt, "retry_at": st.retryAt, "restarts": st.restarts},
		})
	}
	return out, nil
}

// recoverAfter is how long a restarted role must run before its failure
// stops being reported.
const recoverAfter = 10 * time.Second

// recovered clears the failure of a role that has run for recoverAfter.
func (s *supervisor) recovered(name string) {
	s.set(name, func(st *roleState) { st.err = nil })
}
