package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lambdarec/lambdarec/internal/obs"
)

// speedFirst gives the speed layer the CPU first when dev runs every role
// in one process and the CPU is short. Go has no goroutine priorities, so
// the roles whose freshness matters less yield on their own: before each
// micro-batch the archive, and before each scheduled run the batch, wait
// while the speed layer is behind (holdFrom records or more), until it has
// caught up (below resumeBelow) — for at most maxHold each time, so they
// keep making progress whatever the speed layer does: the archive at least
// one micro-batch per maxHold (plus its own time), a batch run at most one
// hold late. Nothing is skipped or reordered, only delayed; the archive's
// lag grows meanwhile and is visible as usual (/v1/status, its lag
// metrics), the holds in lambdarec_dev_yield_seconds_total and one log line
// a minute per role.
//
// Measured (internal/bench/speedprobe/dev-under-load.sh at 50,000 events/s):
// in the flood the archive's Parquet encoding and the batch runs took about
// 55% of dev's CPU and the speed layer 25%, so the speed layer fell minutes
// behind and single POSTs got no speed answer within seconds.
type speedFirst struct {
	lag         func() int64 // the speed layer's records behind; < 0 unknown
	holdFrom    int64
	resumeBelow int64
	poll        time.Duration
	log         *slog.Logger
	held        *prometheus.CounterVec
}

// Hold thresholds: 25,000 records is half a second of a 50,000 events/s
// stream, a backlog a layer that keeps up never has (it polls every few
// milliseconds); 5,000 leaves the speed layer a tenth of a second of it
// before the others resume.
const (
	yieldHoldFrom    = 25_000
	yieldResumeBelow = 5_000
	yieldPoll        = 20 * time.Millisecond
)

func newSpeedFirst(lag func() int64, reg prometheus.Registerer, log *slog.Logger) (*speedFirst, error) {
	held := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "lambdarec", Subsystem: "dev", Name: "yield_seconds_total",
		Help: "Time a dev role (archive, batch) waited for the speed layer to catch up before its next step.",
	}, []string{"role"})
	if err := reg.Register(held); err != nil {
		return nil, err
	}
	return &speedFirst{
		lag: lag, holdFrom: yieldHoldFrom, resumeBelow: yieldResumeBelow, poll: yieldPoll,
		log: obs.RateLimit(log, slog.LevelInfo, time.Minute), held: held,
	}, nil
}

// hold waits, at most maxHold, while the speed layer is behind; it returns
// how long it waited.
func (g *speedFirst) hold(ctx context.Context, role string, maxHold time.Duration) time.Duration {
	if lag := g.lag(); lag < g.holdFrom {
		return 0
	}
	start := time.Now()
	t := time.NewTicker(g.poll)
	defer t.Stop()
wait:
	for time.Since(start) < maxHold && g.lag() >= g.resumeBelow {
		select {
		case <-ctx.Done():
			break wait
		case <-t.C:
		}
	}
	d := time.Since(start)
	g.held.WithLabelValues(role).Add(d.Seconds())
	g.log.Info("role yielded the cpu to the speed layer", "role", role, "waited", d.Round(time.Millisecond), "speed_lag_records", g.lag())
	return d
}

// archiveMaxHold bounds one hold of the archive: it archives at least a
// micro-batch (archive.max_records, 50,000 by default) per 5 s, and catches
// up once the speed layer keeps up.
const archiveMaxHold = 5 * time.Second
