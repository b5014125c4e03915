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

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr serveTestBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"serve", "--http", "127.0.0.1:0", "--brokers", " " + br.Addr() + " ,"}, &stdout, &stderr)
	}()

	listening := regexp.MustCompile(`msg="http server listening".* addr=(\S+)`)
	var base string
	for deadline := time.Now().Add(10 * time.Second); base == ""; {
		if m := listening.FindStringSubmatch(stderr.String()); m != nil {
			base = "http://" + m[1]
			break
		}
		select {
		case code := <-exit:
			t.Fatalf("serve exited with %d: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not log its address: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

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

	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("serve exited with %d: %s", code, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop after its context ended")
	}
	if !strings.Contains(stderr.String(), `msg="http server stopped"`) {
		t.Errorf("no clean stop logged: %s", stderr.String())
	}
}

func TestServeCommandRejectsEmptyBrokers(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--brokers", " , "}, &stdout, &stderr); code != 2 {
		t.Fatalf("exit %d, want 2: %s", code, stderr.String())
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
