package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// Scheduler runs batch jobs on a cron schedule in-process, never two at once:
// a tick that comes while a run is still going is skipped and logged.
type Scheduler struct {
	runner *Runner
	sched  cron.Schedule
	spec   string
	log    *slog.Logger
	m      *RunMetrics // nil: not exported

	mu sync.Mutex // held while a run is going
}

// ParseSchedule parses a standard 5-field cron spec or a descriptor such as
// "@hourly" or "@every 10m".
func ParseSchedule(spec string) (cron.Schedule, error) {
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("cron spec %q: %w", spec, err)
	}
	return s, nil
}

// NewScheduler returns a scheduler running r on spec.
func NewScheduler(r *Runner, spec string, log *slog.Logger) (*Scheduler, error) {
	s, err := ParseSchedule(spec)
	if err != nil {
		return nil, err
	}
	return &Scheduler{runner: r, sched: s, spec: spec, log: log}, nil
}

// SetMetrics records every run of the scheduler in m. Call it before Run.
func (s *Scheduler) SetMetrics(m *RunMetrics) { s.m = m }

// RunOnce runs a batch now unless one is already running, in which case it
// returns false.
func (s *Scheduler) RunOnce(ctx context.Context) (*Result, bool, error) {
	if !s.mu.TryLock() {
		return nil, false, nil
	}
	defer s.mu.Unlock()
	start := time.Now()
	res, err := s.runner.Run(ctx)
	end := time.Now()
	s.m.observe(res, err, end.Sub(start), end)
	return res, true, err
}

// Run fires batch runs on the schedule until ctx ends; a run in progress then
// sees the cancelled context and stops, leaving the previous view current.
func (s *Scheduler) Run(ctx context.Context) error {
	s.log.Info("batch schedule started", "cron", s.spec)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		next := s.sched.Next(time.Now())
		s.log.Debug("next batch run", "at", next)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(next)):
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ran, err := s.RunOnce(ctx)
			switch {
			case !ran:
				s.log.Warn("batch run skipped: the previous one is still running")
			case errors.Is(err, ErrNoEvents):
				s.log.Info("batch run skipped: no events archived yet")
			case err != nil && ctx.Err() == nil:
				s.log.Error("batch run failed", "err", err)
			}
		}()
	}
}
