package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/lambdarec/lambdarec/batch"
)

// devFirstBatches runs dev's first batches early, so that a new user sees
// batch answers within seconds rather than after --batch-every: at 3 s,
// then after 6, 12, 24 s… (each interval doubling) while the next one comes
// sooner than the schedule's first run would. Then the schedule takes over.
// A run skipped for lack of events, or failed, is not retried early: the
// next early run (or the schedule) comes soon.
func devFirstBatches(ctx context.Context, sched *batch.Scheduler, every time.Duration, log *slog.Logger) {
	start := time.Now()
	for wait := 3 * time.Second; time.Since(start)+wait < every; wait *= 2 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		res, ran, err := sched.RunOnce(ctx)
		switch {
		case errors.Is(err, batch.ErrNoEvents):
			log.Info("early batch run skipped: no events archived yet")
		case err != nil && ctx.Err() == nil:
			log.Warn("early batch run failed", "err", err)
		case ran && res != nil:
			log.Info("early batch run done", "batch_id", res.Run.BatchID, "up_to_date", res.UpToDate, "after", time.Since(start).Round(time.Millisecond))
		}
	}
}

// devSchedule runs a batch every interval until ctx ends, like
// batch.Scheduler.Run, except that a run due while the speed layer is
// behind waits for it (prio), at most one interval: a run is then at most
// that late, and never skipped.
func devSchedule(ctx context.Context, sched *batch.Scheduler, every time.Duration, prio *speedFirst, log *slog.Logger) error {
	log.Info("batch schedule started", "every", every)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
		prio.hold(ctx, "batch", every)
		_, _, err := sched.RunOnce(ctx)
		switch {
		case errors.Is(err, batch.ErrNoEvents):
			log.Info("batch run skipped: no events archived yet")
		case err != nil && ctx.Err() == nil:
			log.Error("batch run failed", "err", err)
		}
	}
}
