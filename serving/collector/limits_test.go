package collector

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// pendingRequest is a POST /v1/events whose body the test writes when it
// chooses: until then the request is in flight at the collector.
type pendingRequest struct {
	w    *io.PipeWriter
	done chan httpResult
}

// startPost sends a POST whose body comes from a pipe; contentLength < 0
// sends it chunked.
func (e *testEnv) startPost(t *testing.T, contentLength int64) *pendingRequest {
	t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, e.url+"/v1/events", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.ContentLength = contentLength
	p := &pendingRequest{w: pw, done: make(chan httpResult, 1)}
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			p.done <- httpResult{status: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		p.done <- httpResult{resp.StatusCode, resp.Header, b}
	}()
	t.Cleanup(func() { pw.Close() })
	return p
}

func (p *pendingRequest) result(t *testing.T) httpResult {
	t.Helper()
	select {
	case r := <-p.done:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no answer within 20s")
		return httpResult{}
	}
}

// waitGauge waits until the collector holds want requests.
func waitInflight(t *testing.T, e *testEnv, reqs int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); e.col.budget.reqs.Load() != reqs; {
		if time.Now().After(deadline) {
			t.Fatalf("in-flight requests %d, want %d", e.col.budget.reqs.Load(), reqs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func wantOverloaded(t *testing.T, r httpResult) {
	t.Helper()
	wantError(t, r, http.StatusServiceUnavailable, CodeOverloaded)
	if r.header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q, want 1", r.header.Get("Retry-After"))
	}
}

// A request past MaxInflightRequests is refused at once, its body unread:
// the refused request's body is never written, so an answer proves it.
func TestMaxInflightRequests(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.MaxInflightRequests = 1 })
	body := jsonArray(t, testEvents(3))
	first := e.startPost(t, int64(len(body)))
	waitInflight(t, e, 1)

	second := e.startPost(t, 1000) // its body is never sent
	wantOverloaded(t, second.result(t))

	if _, err := first.w.Write(body); err != nil {
		t.Fatal(err)
	}
	first.w.Close()
	wantAccepted(t, first.result(t), 3)
	waitInflight(t, e, 0)
	wantAccepted(t, e.post(t, "application/json", body), 3)
}

// Bodies past MaxInflightBytes are refused: one with a Content-Length before
// any of it is read, a chunked one as soon as its bytes no longer fit. Every
// reservation is returned.
func TestMaxInflightBytes(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.MaxInflightBytes = 64 << 10 })
	body := jsonArray(t, testEvents(60))
	if len(body) > 40<<10 {
		t.Fatalf("test body of %d bytes is too large", len(body))
	}
	const held = 40 << 10
	first := e.startPost(t, held) // reserves 40 KiB, sends nothing yet
	waitInflight(t, e, 1)
	if got := e.col.budget.bytes.Load(); got != held {
		t.Fatalf("reserved %d bytes, want %d", got, held)
	}

	// 40 KiB more does not fit: refused without being read.
	wantOverloaded(t, e.startPost(t, held).result(t))

	// A chunked body is metered as it is read: 24 KiB fit, then no more.
	chunked := e.startPost(t, -1)
	go func() {
		chunk := []byte(strings.Repeat(" ", 4<<10))
		for range 16 {
			if _, err := chunked.w.Write(chunk); err != nil {
				return
			}
		}
	}()
	wantOverloaded(t, chunked.result(t))

	// The held request completes (padded to its announced length).
	if _, err := first.w.Write(append(body, strings.Repeat(" ", held-len(body))...)); err != nil {
		t.Fatal(err)
	}
	first.w.Close()
	wantAccepted(t, first.result(t), 60)
	waitInflight(t, e, 0)
	if got := e.col.budget.bytes.Load(); got != 0 {
		t.Fatalf("%d bytes still reserved after every request was answered", got)
	}
	// Chunked bodies that fit are accepted.
	small := e.startPost(t, -1)
	go func() { small.w.Write(body); small.w.Close() }()
	wantAccepted(t, small.result(t), 60)
}
