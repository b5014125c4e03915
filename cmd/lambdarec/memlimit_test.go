package main

import (
	"bytes"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
)

// TestCapMemoryLimitNeverRaises: a configured bound lowers the runtime's
// soft memory limit but never lifts it over the one the process started
// with (GOMEMLIMIT from a pod's memory limit), and says so.
func TestCapMemoryLimitNeverRaises(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))

	debug.SetMemoryLimit(4 << 30) // as GOMEMLIMIT=4GiB would
	if before := capMemoryLimit(768<<20, "batch.max_memory", log); before != 4<<30 {
		t.Fatalf("before = %d, want %d", before, int64(4<<30))
	}
	if got := debug.SetMemoryLimit(-1); got != 768<<20 {
		t.Fatalf("lower bound: limit %d, want %d", got, int64(768<<20))
	}
	if buf.Len() != 0 {
		t.Fatalf("a lower bound logged: %s", buf.String())
	}

	debug.SetMemoryLimit(1 << 30)
	capMemoryLimit(6<<30, "batch.max_memory", log)
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Fatalf("higher bound raised the limit to %d, want it kept at %d", got, int64(1<<30))
	}
	if !strings.Contains(buf.String(), "batch.max_memory") || !strings.Contains(buf.String(), "level=WARN") {
		t.Fatalf("no warning naming the key: %q", buf.String())
	}
}
