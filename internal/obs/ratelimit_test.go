package obs

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

func TestRateLimitOneLinePerCausePerInterval(t *testing.T) {
	var buf syncBuffer
	log := RateLimit(slog.New(slog.NewTextHandler(&buf, nil)), slog.LevelWarn, time.Hour)
	derived := log.With("component", "x") // shares the limit
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range 10000 {
				log.Warn("fetch error", "partition", i%6)
				derived.Warn("fetch error", "partition", i%6)
				log.Error("commit error")
				log.Info("progress") // below the limited level: all pass
			}
		})
	}
	wg.Wait()
	var fetch, commit, progress int
	for _, l := range buf.lines() {
		switch {
		case strings.Contains(l, "fetch error"):
			fetch++
		case strings.Contains(l, "commit error"):
			commit++
		case strings.Contains(l, "progress"):
			progress++
		}
	}
	if fetch != 1 || commit != 1 {
		t.Fatalf("limited causes wrote %d and %d lines, want 1 each", fetch, commit)
	}
	if progress != 40000 {
		t.Fatalf("info lines = %d, want all 40000", progress)
	}
}

// The limit goes by each record's time: records stamped within the
// interval are held back, and the first one past it carries their number.
// (Stamped by the test, so that a loaded machine cannot stretch the burst
// across an interval.)
func TestRateLimitReportsSuppressed(t *testing.T) {
	var buf syncBuffer
	h := RateLimit(slog.New(slog.NewTextHandler(&buf, nil)), slog.LevelInfo, 50*time.Millisecond).Handler()
	t0 := time.Now()
	for i := range 100 {
		if err := h.Handle(context.Background(), slog.NewRecord(t0.Add(time.Duration(i)*400*time.Microsecond), slog.LevelWarn, "fetch error", 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Handle(context.Background(), slog.NewRecord(t0.Add(60*time.Millisecond), slog.LevelWarn, "fetch error", 0)); err != nil {
		t.Fatal(err)
	}
	lines := buf.lines()
	if len(lines) != 2 {
		t.Fatalf("lines = %q, want 2", lines)
	}
	if strings.Contains(lines[0], "suppressed") || !strings.Contains(lines[1], "suppressed=99") {
		t.Fatalf("lines = %q, want the second to carry suppressed=99", lines)
	}
}
