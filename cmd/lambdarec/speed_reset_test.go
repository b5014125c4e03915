package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestSpeedResetToBatchNeedsABatch: without a recorded batch there is no
// boundary to reset to, and the command says so instead of starting.
func TestSpeedResetToBatchNeedsABatch(t *testing.T) {
	isolateIceberg(t)
	br := startBroker(t, 2, "ev")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"speed", "--reset-to-batch", "--brokers", br.Addr(), "--topic", "ev", "--store", "memory", "--metrics-addr", ""}, &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "no batch recorded yet") {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
}
