package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// lintMetrics fails t for each problem promlint finds in the /metrics body
// of role: every role's test (serve, speed, archive, batch schedule, dev)
// lints what it scrapes, so a metric name that breaks Prometheus'
// conventions (a gauge named _total, a counter without it, a unit that is
// not a base unit) fails CI.
func lintMetrics(t *testing.T, role string, body []byte) {
	t.Helper()
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("%s /metrics does not parse: %v", role, err)
	}
	for _, p := range problems {
		t.Errorf("%s /metrics: promlint: %s: %s", role, p.Metric, p.Text)
	}
	if !bytes.Contains(body, []byte("lambdarec_")) {
		t.Errorf("%s /metrics has no lambdarec metric", role)
	}
}

// promlint itself catches the names the issue found.
func TestLintMetricsCatches(t *testing.T) {
	bad := "# HELP lambdarec_speed_lag_records_total Records not yet processed.\n# TYPE lambdarec_speed_lag_records_total gauge\nlambdarec_speed_lag_records_total 3\n"
	problems, err := promlint.New(strings.NewReader(bad)).Lint()
	if err != nil || len(problems) == 0 {
		t.Fatalf("promlint passes a gauge named _total: %v %v", problems, err)
	}
}

// batch schedule serves the batch-run metrics: runs by result, duration,
// the last run; it runs on an empty warehouse, so every run is no_events.
func TestBatchScheduleMetrics(t *testing.T) {
	isolateIceberg(t)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr serveTestBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"batch", "schedule", "--cron", "@every 1s", "--metrics-addr", addr}, &stdout, &stderr)
	}()
	runs := regexp.MustCompile(`(?m)^lambdarec_batch_runs_total\{result="no_events"\} (\d+)$`)
	var body []byte
	waitFor(t, 60*time.Second, "two batch runs counted at /metrics", func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		m := runs.FindSubmatch(body)
		if m == nil {
			return false
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n >= 2
	})
	lintMetrics(t, "batch schedule", body)
	for _, want := range []string{"lambdarec_batch_run_duration_seconds_count ", "lambdarec_batch_last_run_timestamp_seconds ",
		`lambdarec_batch_last_success_timestamp_seconds 0`, `lambdarec_batch_runs_total{result="error"} 0`, "lambdarec_build_info"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("batch schedule did not stop")
	}
}
