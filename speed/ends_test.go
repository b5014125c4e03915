package speed

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/store"
)

// stuckWriter is a ViewWriter whose writes wait while it is held: the poll
// that flushes stays in progress, holding the layer's lock, as a poll of
// tens of thousands of records does behind a backlog.
type stuckWriter struct {
	*store.Memory
	held    chan struct{} // closed: writes go through
	waiting atomic.Bool   // a write has been held
}

func (w *stuckWriter) UpsertSessions(ctx context.Context, views []store.SessionView) error {
	select {
	case <-w.held:
	default:
		w.waiting.Store(true)
	}
	select {
	case <-w.held:
	case <-ctx.Done():
		return ctx.Err()
	}
	return w.Memory.UpsertSessions(ctx, views)
}

// TestLagWhileAPollIsInProgress: the lag and the positions /v1/status reads
// do not wait for the poll being processed, and the lag counts the records
// that arrived meanwhile (against the broker's end offsets, not the high
// watermarks of the fetches processed). Dev under a flood showed a speed
// layer lag 0 and healthy while it processed a few dozen records a second.
func TestLagWhileAPollIsInProgress(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) {
		tt := newTestTopicOn(t, kb, 3)
		w := &stuckWriter{Memory: store.NewMemory(), held: make(chan struct{})}
		l := startLayer(t, tt, nil, w, nil)
		waitFor(t, 10*time.Second, "ready on an empty topic", l.Ready)
		before := l.Positions()

		g := newStreamGen(rand.New(rand.NewPCG(8, 8)), time.Now().Add(-time.Hour))
		tt.produce(g.batch(200)) // their views' write is held
		// The layer's next flush waits for that write, holding the poll
		// that called it. It comes after an idle poll that had views to
		// write (rescoring), or after the next records: fewer than
		// smallPoll, they are flushed in the poll that applies them, so
		// that poll is the one stuck, and the positions never include
		// them. (The 500 ms used to count from the produce: on a loaded
		// machine the layer could fetch the first records with these.)
		waitFor(t, 15*time.Second, "a view write held", w.waiting.Load)
		time.Sleep(500 * time.Millisecond)
		tt.produce(g.batch(50)) // arrive while a poll is stuck
		var n int64
		for _, end := range tt.endOffsets() {
			n += end
		}
		waitFor(t, 15*time.Second, "the lag counts the records that arrived during the stuck poll", func() bool {
			start := time.Now()
			lag, _ := l.Lag()
			pos := l.Positions()
			if d := time.Since(start); d > time.Second {
				t.Fatalf("reading the lag and the positions took %s during a poll", d)
			}
			var at int64
			for _, p := range pos {
				at += p
			}
			return at < n && lag >= n-at && len(pos) >= len(before)
		})
		close(w.held)
		waitFor(t, 15*time.Second, "caught up", func() bool { return caughtUp(l.Positions(), tt.endOffsets()) })
		waitFor(t, 5*time.Second, "lag 0 once caught up", func() bool { lag, _ := l.Lag(); return lag == 0 })
	})
}
