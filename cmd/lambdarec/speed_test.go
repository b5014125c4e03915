package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSpeedCommand starts `lambdarec speed` against the embedded broker: it
// joins the group, becomes ready, serves its metrics, and stops cleanly.
func TestSpeedCommand(t *testing.T) {
	br := startBroker(t, 3, "events", "events.dlq")
	isolateIceberg(t)
	metrics := freeAddr(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr serveTestBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"speed", "--brokers", br.Addr(), "--metrics-addr", metrics}, &stdout, &stderr)
	}()
	waitFor(t, 30*time.Second, "lambdarec speed ready", func() bool {
		resp, err := http.Get("http://" + metrics + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "lambdarec_speed_") {
		t.Fatalf("no speed metrics at /metrics:\n%s", tail(string(body), 2000))
	}
	lintMetrics(t, "speed", body)
	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit code %d:\n%s", code, tail(stderr.String(), 3000))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("lambdarec speed did not stop")
	}
}
