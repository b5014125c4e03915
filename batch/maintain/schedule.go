package maintain

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// Run runs a pass on Maintenance.Cron until ctx ends (nothing when the spec
// is empty). A tick that comes while a pass is still running is skipped; a
// failed pass is logged and the next tick tries again.
func (m *Maintainer) Run(ctx context.Context) error {
	spec := m.cfg.Maintenance.Cron
	if spec == "" {
		m.log.Info("maintenance schedule off")
		<-ctx.Done()
		return nil
	}
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return fmt.Errorf("maintenance cron %q: %w", spec, err)
	}
	m.log.Info("maintenance schedule started", "cron", spec)
	for {
		next := sched.Next(time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(next)):
		}
		rep, err := m.RunOnce(ctx)
		switch {
		case errors.Is(err, ErrBusy):
			m.log.Warn("maintenance pass skipped: the previous one is still running")
		case err != nil && ctx.Err() == nil:
			m.log.Error("maintenance pass failed", "err", err)
		case err == nil:
			m.log.Info("maintenance pass done", "tables", len(rep.Tables), "duration", rep.Duration)
		}
	}
}
