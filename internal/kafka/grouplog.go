package kafka

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// LogGroupErrors returns an option that logs the errors that break a
// consumer group member out of its group (a refused login, a missing ACL, a
// coordinator that cannot be reached), explained by Explain, at most once
// per every: a member that cannot join is otherwise only "not ready".
func LogGroupErrors(log *slog.Logger, sec Security, every time.Duration) kgo.Opt {
	return kgo.WithHooks(&groupErrorLog{log: log, sec: sec, every: every})
}

type groupErrorLog struct {
	log   *slog.Logger
	sec   Security
	every time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (g *groupErrorLog) OnGroupManageError(err error) {
	if err == nil || errors.Is(err, kgo.ErrClientClosed) {
		return
	}
	g.mu.Lock()
	now := time.Now()
	if !g.last.IsZero() && now.Sub(g.last) < g.every {
		g.suppressed++
		g.mu.Unlock()
		return
	}
	g.last = now
	suppressed := g.suppressed
	g.suppressed = 0
	g.mu.Unlock()
	g.log.Error("kafka consumer group error", "err", Explain(err, g.sec), "suppressed", suppressed)
}
