package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/broker"
)

// TestSpeedCommand starts `lambdarec speed` against the embedded broker: it
// joins the group, becomes ready, serves its metrics, and stops cleanly.
func TestSpeedCommand(t *testing.T) {
	br, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Topics: []string{"events", "events.dlq"}, Partitions: 3}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	dir := t.TempDir()
	t.Setenv("LAMBDAREC_ICEBERG_CATALOG_URI", "file:"+filepath.Join(dir, "catalog.db"))
	t.Setenv("LAMBDAREC_ICEBERG_WAREHOUSE", "file://"+filepath.Join(dir, "warehouse"))
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
