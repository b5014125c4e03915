package obs

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// maxCauses bounds the causes a rate-limited handler remembers. Messages
// are constant phrases, so a process has far fewer; past it the oldest
// memory is dropped, which at worst lets one extra line through.
const maxCauses = 4096

// RateLimit returns log with every record at or above level limited to one
// line per every for each cause — its level and message (messages are
// constant phrases; values are attributes). A line written after others of
// its cause were dropped carries their number in the attribute "suppressed".
// Records below level pass unchanged. A fetch error repeating in a tight
// loop thus costs one line a second, not a line a millisecond.
func RateLimit(log *slog.Logger, level slog.Level, every time.Duration) *slog.Logger {
	return slog.New(&rateLimited{next: log.Handler(), level: level, every: every, st: &rlState{m: map[rlKey]*rlCause{}}})
}

type rlKey struct {
	level slog.Level
	msg   string
}

type rlCause struct {
	last       time.Time
	suppressed int
}

// rlState is shared by a handler and the handlers WithAttrs/WithGroup derive
// from it, so a cause is limited however its logger was derived.
type rlState struct {
	mu sync.Mutex
	m  map[rlKey]*rlCause
}

type rateLimited struct {
	next  slog.Handler
	level slog.Level
	every time.Duration
	st    *rlState
}

func (h *rateLimited) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *rateLimited) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < h.level {
		return h.next.Handle(ctx, r)
	}
	k := rlKey{r.Level, r.Message}
	now := r.Time
	if now.IsZero() {
		now = time.Now()
	}
	h.st.mu.Lock()
	c := h.st.m[k]
	if c == nil {
		if len(h.st.m) >= maxCauses {
			clear(h.st.m)
		}
		c = &rlCause{}
		h.st.m[k] = c
	} else if now.Sub(c.last) < h.every {
		c.suppressed++
		h.st.mu.Unlock()
		return nil
	}
	c.last = now
	n := c.suppressed
	c.suppressed = 0
	h.st.mu.Unlock()
	if n > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", n))
	}
	return h.next.Handle(ctx, r)
}

func (h *rateLimited) WithAttrs(as []slog.Attr) slog.Handler {
	return &rateLimited{next: h.next.WithAttrs(as), level: h.level, every: h.every, st: h.st}
}

func (h *rateLimited) WithGroup(name string) slog.Handler {
	return &rateLimited{next: h.next.WithGroup(name), level: h.level, every: h.every, st: h.st}
}
