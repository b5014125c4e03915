package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestServeCommand runs `lambdarec serve` against an embedded broker: it logs
// where it listens, accepts an event, is ready, exposes metrics, and stops
// cleanly when its context ends.
func TestServeCommand(t *testing.T) {
	br := startBroker(t, 3, "events", "events.dlq")
	// The in-process store follows batches in Iceberg.
	isolateIceberg(t)

	sc := startServe(t, 10*time.Second, "", "--http", "127.0.0.1:0", "--brokers", " "+br.Addr()+" ,")
	base := sc.base

	ts := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	ev := fmt.Sprintf(`{"event_id":"e-1","timestamp":%q,"user_id":"u-1","session_id":"s-1","page_view":{"item_id":"i-1"}}`, ts)
	status, body := serveTestDo(t, http.MethodPost, base+"/v1/events", "application/json", ev)
	if status != http.StatusAccepted || !strings.Contains(body, `"accepted":1`) {
		t.Fatalf("POST /v1/events: %d %s", status, body)
	}
	if status, body := serveTestDo(t, http.MethodGet, base+"/readyz", "", ""); status != http.StatusOK || !strings.Contains(body, `"kafka":"ok"`) {
		t.Fatalf("/readyz: %d %s", status, body)
	}
	if status, _ := serveTestDo(t, http.MethodGet, base+"/healthz", "", ""); status != http.StatusOK {
		t.Fatalf("/healthz: %d", status)
	}
	status, body = serveTestDo(t, http.MethodGet, base+"/metrics", "", "")
	if status != http.StatusOK || !strings.Contains(body, "lambdarec_collector_events_accepted_total 1\n") {
		t.Fatalf("/metrics: %d, accepted counter missing", status)
	}
	lintMetrics(t, "serve", []byte(body))

	sc.stop(t)
	if !strings.Contains(sc.stderr.String(), `msg="http server stopped"`) {
		t.Errorf("no clean stop logged: %s", sc.stderr.String())
	}
}

func TestServeCommandRejectsEmptyBrokers(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--brokers", " , "}, &stdout, &stderr); code != 2 {
		t.Fatalf("exit %d, want 2: %s", code, stderr.String())
	}
}

// serveCmd is a `lambdarec serve` a test runs.
type serveCmd struct {
	base   string // http://host:port it listens on
	stderr *serveTestBuffer
	exit   chan int
	cancel context.CancelFunc
}

// startServe runs `lambdarec serve args…` until the test ends and waits up
// to wait for it to log where it listens, in a line that matches listening
// after the address (default: anything). The test fails if the command
// exits first.
func startServe(t *testing.T, wait time.Duration, listening string, args ...string) *serveCmd {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	sc := &serveCmd{stderr: &serveTestBuffer{}, exit: make(chan int, 1), cancel: cancel}
	go func() {
		var stdout serveTestBuffer
		sc.exit <- run(ctx, append([]string{"serve"}, args...), &stdout, sc.stderr)
	}()
	re := regexp.MustCompile(`msg="http server listening".* addr=(\S+)` + listening)
	for deadline := time.Now().Add(wait); ; {
		if m := re.FindStringSubmatch(sc.stderr.String()); m != nil {
			sc.base = "http://" + m[1]
			return sc
		}
		select {
		case code := <-sc.exit:
			t.Fatalf("serve exited with %d: %s", code, sc.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not log its address%s: %s", listening, sc.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop ends the command's context and requires it to exit with 0 within
// 20 s.
func (sc *serveCmd) stop(t *testing.T) {
	t.Helper()
	sc.cancel()
	select {
	case code := <-sc.exit:
		if code != 0 {
			t.Fatalf("serve exited with %d: %s", code, sc.stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop after its context ended")
	}
}

func serveTestDo(t *testing.T, method, url, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// serveTestBuffer is a bytes.Buffer safe for the command's logger and the
// test to use at once.
type serveTestBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *serveTestBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *serveTestBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
