package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
)

func newTestServer(t *testing.T, deps Deps) *Server {
	t.Helper()
	cfg := config.Default().Serve
	cfg.Addr = "127.0.0.1:0"
	s, err := NewServer(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, h http.Handler, method, path string) response {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range testRequestHeader {
		req.Header[k] = v
	}
	h.ServeHTTP(rec, req)
	return response{rec.Code, rec.Header(), rec.Body.String()}
}

// wantError checks that r is a JSON error envelope with the given status and code.
func wantError(t *testing.T, r response, status int, code string) Error {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d (body %s)", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var body struct {
		Error Error `json:"error"`
	}
	dec := json.NewDecoder(strings.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	if body.Error.Code != code || body.Error.Message == "" {
		t.Fatalf("error %+v, want code %q and a message", body.Error, code)
	}
	return body.Error
}

func TestHealthz(t *testing.T) {
	s := newTestServer(t, Deps{})
	r := do(t, s.Handler(), http.MethodGet, "/healthz")
	if r.status != http.StatusOK || !strings.Contains(r.body, `"status":"ok"`) {
		t.Fatalf("healthz: %d %s", r.status, r.body)
	}
	wantError(t, do(t, s.Handler(), http.MethodPost, "/healthz"), http.StatusMethodNotAllowed, CodeMethodNotAllowed)
}

func TestReadyz(t *testing.T) {
	var mu sync.Mutex
	var kafkaErr error
	s := newTestServer(t, Deps{Checks: []Check{{Name: "kafka", Func: func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		return kafkaErr
	}}}})
	s.AddCheck(Check{Name: "store", Func: func(ctx context.Context) error {
		if _, ok := ctx.Deadline(); !ok {
			return errors.New("check has no deadline")
		}
		return nil
	}})

	r := do(t, s.Handler(), http.MethodGet, "/readyz")
	if r.status != http.StatusOK || !strings.Contains(r.body, `"kafka":"ok"`) || !strings.Contains(r.body, `"store":"ok"`) {
		t.Fatalf("readyz: %d %s", r.status, r.body)
	}

	mu.Lock()
	kafkaErr = errors.New("no broker reachable")
	mu.Unlock()
	e := wantError(t, do(t, s.Handler(), http.MethodGet, "/readyz"), http.StatusServiceUnavailable, CodeNotReady)
	if !strings.Contains(e.Message, "kafka: no broker reachable") || strings.Contains(e.Message, "store") {
		t.Fatalf("message %q should name only the failing check", e.Message)
	}

	mu.Lock()
	kafkaErr = nil
	mu.Unlock()
	s.draining.Store(true)
	e = wantError(t, do(t, s.Handler(), http.MethodGet, "/readyz"), http.StatusServiceUnavailable, CodeNotReady)
	if e.Message != "shutting down" {
		t.Fatalf("draining message %q", e.Message)
	}
}

func TestUnroutedRequestsGetJSONErrors(t *testing.T) {
	s := newTestServer(t, Deps{})
	s.Handle("POST /v1/things", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusAccepted, map[string]int{"accepted": 1})
	}))

	wantError(t, do(t, s.Handler(), http.MethodGet, "/nope"), http.StatusNotFound, CodeNotFound)
	r := do(t, s.Handler(), http.MethodGet, "/v1/things")
	wantError(t, r, http.StatusMethodNotAllowed, CodeMethodNotAllowed)
	if allow := r.header.Get("Allow"); allow != "POST" {
		t.Fatalf("Allow %q, want POST", allow)
	}
	r = do(t, s.Handler(), http.MethodPost, "/v1/things")
	if r.status != http.StatusAccepted || r.body != "{\"accepted\":1}\n" {
		t.Fatalf("mounted handler: %d %q", r.status, r.body)
	}
}

func TestPanicBecomesJSON500(t *testing.T) {
	var logs bytes.Buffer
	s := newTestServer(t, Deps{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	s.Handle("/boom", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	wantError(t, do(t, s.Handler(), http.MethodGet, "/boom"), http.StatusInternalServerError, CodeInternal)
	if !strings.Contains(logs.String(), "http handler panicked") {
		t.Fatalf("panic not logged: %s", logs.String())
	}
}

func TestMetrics(t *testing.T) {
	s := newTestServer(t, Deps{})
	s.Handle("POST /v1/things", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusAccepted, map[string]int{"accepted": 1})
	}))
	do(t, s.Handler(), http.MethodPost, "/v1/things")
	do(t, s.Handler(), "BREW", "/some/random/path")
	r := do(t, s.Handler(), http.MethodGet, "/metrics")
	if r.status != http.StatusOK {
		t.Fatalf("metrics: %d", r.status)
	}
	for _, want := range []string{
		`lambdarec_http_request_duration_seconds_count{code="202",handler="POST /v1/things",method="POST"} 1`,
		`lambdarec_http_request_duration_seconds_count{code="404",handler="unmatched",method="other"} 1`,
		`lambdarec_http_requests_in_flight 1`, // the /metrics request itself
		`go_goroutines `,
		`process_start_time_seconds `,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestRunGracefulShutdown: when ctx ends, a request in flight completes,
// /readyz fails meanwhile, new connections are refused, and Run returns nil.
func TestRunGracefulShutdown(t *testing.T) {
	var logs syncBuffer
	s := newTestServer(t, Deps{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	started, release := make(chan struct{}), make(chan struct{})
	s.Handle("/slow", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		WriteJSON(w, http.StatusOK, map[string]string{"done": "yes"})
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- s.Serve(ctx, ln) }()

	slow := make(chan response, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			slow <- response{status: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		slow <- response{resp.StatusCode, resp.Header, string(b)}
	}()
	<-started
	cancel()
	waitFor(t, func() bool { return s.draining.Load() })
	wantError(t, do(t, s.Handler(), http.MethodGet, "/readyz"), http.StatusServiceUnavailable, CodeNotReady)
	waitFor(t, func() bool {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-runErr:
		t.Fatalf("Serve returned %v with a request in flight", err)
	default:
	}
	close(release)
	if r := <-slow; r.status != http.StatusOK || !strings.Contains(r.body, `"done":"yes"`) {
		t.Fatalf("in-flight request: %d %s", r.status, r.body)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	for _, want := range []string{"http server listening", "addr=" + ln.Addr().String(), "http server stopped"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
}

func TestRunListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := config.Default().Serve
	cfg.Addr = ln.Addr().String() // taken
	s, err := NewServer(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "listen on "+cfg.Addr) {
		t.Fatalf("Run on a taken port: %v", err)
	}
}

func TestNewServerRejectsBadConfig(t *testing.T) {
	cfg := config.Default().Serve
	cfg.ShutdownTimeout = 0
	if _, err := NewServer(cfg, Deps{}); err == nil {
		t.Fatal("zero shutdown timeout accepted")
	}
	cfg = config.Default().Serve
	cfg.Addr = ""
	if _, err := NewServer(cfg, Deps{}); err == nil {
		t.Fatal("empty address accepted")
	}
}

// waitFor polls cond until it holds, failing the test after 5s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
