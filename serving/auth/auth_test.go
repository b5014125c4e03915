package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lambdarec/lambdarec/internal/broker"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/serving"
	"github.com/lambdarec/lambdarec/serving/collector"
)

// The keys of the tests: one per scope, one with every scope.
const (
	keyIngest = "ingest-key-0123456789"
	keyRead   = "read-key-0123456789abc"
	keyAdmin  = "admin-key-0123456789ab"
	keyAll    = "all-scopes-key-0123456789"
	keyNone   = "not-in-the-file-0123456789"
)

const testKeysFile = `# lambdarec API keys
` + keyIngest + ` ingest
` + keyRead + `   read   # a trailing comment

` + keyAdmin + ` admin
` + keyAll + ` ingest,read,admin
`

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestParseKeys(t *testing.T) {
	k, err := ParseKeys(strings.NewReader(testKeysFile))
	if err != nil {
		t.Fatal(err)
	}
	if k.Len() != 4 {
		t.Fatalf("%d keys, want 4", k.Len())
	}
	for key, want := range map[string]Scope{
		keyIngest: ScopeIngest, keyRead: ScopeRead, keyAdmin: ScopeAdmin,
		keyAll: ScopeIngest | ScopeRead | ScopeAdmin,
	} {
		if got, ok := k.Lookup(key); !ok || got != want {
			t.Errorf("Lookup(%s) = %v %v, want %v", key, got, ok, want)
		}
	}
	for _, key := range []string{keyNone, "", keyRead + " ", "# lambdarec"} {
		if got, ok := k.Lookup(key); ok || got != 0 {
			t.Errorf("Lookup(%q) = %v %v, want unknown", key, got, ok)
		}
	}
	if s, _ := ParseKeys(strings.NewReader("k-0123456789abcdef read, admin\n")); s == nil || func() bool { sc, _ := s.Lookup("k-0123456789abcdef"); return sc != ScopeRead|ScopeAdmin }() {
		t.Error("scopes separated by comma and space not accepted")
	}
	empty, err := ParseKeys(strings.NewReader("# nobody yet\n\n"))
	if err != nil || empty.Len() != 0 {
		t.Errorf("comment-only file: %v, %v", empty, err)
	}

	secret := "secret-0123456789abcdef"
	for _, tc := range []struct{ file, want string }{
		{secret + " write\n", `line 1: unknown scope "write"`},
		{"# x\n" + secret + "\n", "line 2: a key without scopes"},
		{secret + " ,\n", "line 1: a key without scopes"},
		{"short read\n", "line 1: the key is shorter than 16 characters"},
		{secret + " read\n" + secret + " admin\n", "line 2: the key of line 1 again"},
		{secret + " Read\n", `unknown scope "Read"`},
		{strings.Repeat("x", 5000) + " read\n", "longer than 4096 bytes"},
	} {
		_, err := ParseKeys(strings.NewReader(tc.file))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%.40q: error %v, want %q", tc.file, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q shows the key", err)
		}
	}
}

// testServer is `lambdarec serve`'s HTTP surface with auth on: the read API
// over a seeded in-process store and the collector over an embedded broker
// (kfake over TCP), on a real listener.
type testServer struct {
	auth *Authenticator
	reg  *prometheus.Registry
	url  string
	logs *syncBuffer
}

func newTestServer(t *testing.T, keysFile string) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	b, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Topics: []string{"events"}, Partitions: 2}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cl, err := kafka.NewClient([]string{b.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)

	scfg := config.Default().Serve
	scfg.Addr = "127.0.0.1:0"
	srv, err := serving.NewServer(scfg, serving.Deps{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{KeysFile: keysFile, ReloadInterval: 20 * time.Millisecond}, Deps{Log: log, Registerer: srv.Registry()})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetGuard(a)
	col, err := collector.New(collector.Config{Topic: "events", ProduceTimeout: 5 * time.Second}, collector.Deps{Client: cl, Registerer: srv.Registry()})
	if err != nil {
		t.Fatal(err)
	}
	srv.Handle("/v1/events", col)
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	if err := st.PublishBatch(context.Background(), &store.BatchView{
		Meta:      store.BatchMeta{BatchID: "b1", Boundary: map[int32]int64{0: 1}, CreatedAt: time.Now()},
		Neighbors: map[string][]store.Scored{"i1": {{Item: "i2", Score: 1}}},
		Popular:   []store.Scored{{Item: "i1", Score: 1}},
	}); err != nil {
		t.Fatal(err)
	}
	api, err := serving.NewAPI(serving.APIConfig{}, serving.APIDeps{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := api.Mount(srv); err != nil {
		t.Fatal(err)
	}
	return &testServer{auth: a, reg: srv.Registry(), url: "http://" + startServer(t, srv), logs: logs}
}

// startServer runs srv.Serve on a loopback listener until the test ends
// and returns its address.
func startServer(t *testing.T, srv *serving.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

type result struct {
	status int
	header http.Header
	body   string
}

func send(t *testing.T, c *http.Client, method, url string, header http.Header, body string) result {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return result{resp.StatusCode, resp.Header, string(b)}
}

func bearer(key string) http.Header { return http.Header{"Authorization": {"Bearer " + key}} }

// wantError checks a JSON error envelope with status and code.
func wantError(t *testing.T, what string, r result, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: status %d, want %d: %s", what, r.status, status, r.body)
		return
	}
	var body struct {
		Error serving.Error `json:"error"`
	}
	dec := json.NewDecoder(strings.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Error.Code != code || body.Error.Message == "" {
		t.Errorf("%s: body %q (%v), want code %q", what, r.body, err, code)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	if status == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer ") {
		t.Errorf("%s: WWW-Authenticate %q", what, r.header.Get("WWW-Authenticate"))
	}
}

const validEvent = `{"event_id":"e1","timestamp":"%s","user_id":"u1","session_id":"s1","product_click":{"item_id":"i1","category":"c"}}`

// Every endpoint: no key and an unknown key get 401, a key without the
// endpoint's scope 403, a key with it the endpoint's answer; open endpoints
// answer without a key.
func TestEveryEndpoint(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keys")
	writeFile(t, file, testKeysFile)
	s := newTestServer(t, file)
	event := strings.Replace(validEvent, "%s", time.Now().UTC().Add(-time.Minute).Format(time.RFC3339), 1)

	type endpoint struct {
		method, path, body string
		scope              Scope
		okStatus           int
	}
	endpoints := []endpoint{
		{"POST", "/v1/events", event, ScopeIngest, http.StatusAccepted},
		{"GET", "/v1/recommendations?user_id=u1", "", ScopeRead, http.StatusOK},
		{"GET", "/v1/items/i1/similar", "", ScopeRead, http.StatusOK},
		{"GET", "/v1/status", "", ScopeAdmin, http.StatusOK},
		{"GET", "/metrics", "", ScopeAdmin, http.StatusOK},
	}
	keyOf := map[Scope]string{ScopeIngest: keyIngest, ScopeRead: keyRead, ScopeAdmin: keyAdmin}
	for _, e := range endpoints {
		what := e.method + " " + e.path
		u := s.url + e.path
		r := send(t, nil, e.method, u, nil, e.body)
		wantError(t, what+" without a key", r, http.StatusUnauthorized, CodeUnauthorized)
		if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="lambdarec"` {
			t.Errorf("%s without a key: WWW-Authenticate %q", what, got)
		}
		for _, h := range []http.Header{
			bearer(keyNone),
			{"X-Api-Key": {keyNone}},
			{"Authorization": {"Basic " + keyAll}}, // the key, but not as a bearer token
			{"Authorization": {"Bearer"}},
			bearer(keyAll + "x"),
			bearer(keyAll[:len(keyAll)-1]),
		} {
			wantError(t, what+" with an unknown key", send(t, nil, e.method, u, h, e.body), http.StatusUnauthorized, CodeUnauthorized)
		}
		for sc, key := range keyOf {
			if sc == e.scope {
				continue
			}
			r := send(t, nil, e.method, u, bearer(key), e.body)
			wantError(t, what+" with the "+sc.String()+" key", r, http.StatusForbidden, CodeForbidden)
			if got := r.header.Get("WWW-Authenticate"); !strings.Contains(got, `scope="`+e.scope.String()+`"`) {
				t.Errorf("%s: 403 WWW-Authenticate %q does not name the scope", what, got)
			}
		}
		for _, h := range []http.Header{bearer(keyOf[e.scope]), {"X-Api-Key": {keyOf[e.scope]}}, bearer(keyAll), {"Authorization": {"bearer  " + keyAll}}} {
			if r := send(t, nil, e.method, u, h, e.body); r.status != e.okStatus {
				t.Errorf("%s with %v: status %d, want %d: %s", what, h, r.status, e.okStatus, r.body)
			}
		}
	}
	// Authorized but bad input: the endpoint's own 400, not an auth error.
	wantError(t, "POST /v1/events invalid", send(t, nil, "POST", s.url+"/v1/events", bearer(keyIngest), `{"event_id":""}`), http.StatusBadRequest, "invalid_event")
	// Open endpoints.
	for _, p := range []string{"/healthz", "/readyz", "/openapi.json"} {
		if r := send(t, nil, "GET", s.url+p, nil, ""); r.status != http.StatusOK {
			t.Errorf("GET %s without a key: %d %s", p, r.status, r.body)
		}
	}
	// Unrouted requests stay 404/405 whatever the key.
	wantError(t, "GET /v1/nope", send(t, nil, "GET", s.url+"/v1/nope", nil, ""), http.StatusNotFound, serving.CodeNotFound)
	wantError(t, "DELETE /v1/status", send(t, nil, "DELETE", s.url+"/v1/status", nil, ""), http.StatusMethodNotAllowed, serving.CodeMethodNotAllowed)

	// Refusals are counted; keys never reach the logs.
	if got := testutil.ToFloat64(s.auth.m.denied.WithLabelValues("missing")); got != float64(len(endpoints)) {
		t.Errorf("denied{missing} = %v, want %d", got, len(endpoints))
	}
	if got := testutil.ToFloat64(s.auth.m.denied.WithLabelValues("scope")); got != float64(2*len(endpoints)) {
		t.Errorf("denied{scope} = %v, want %d", got, 2*len(endpoints))
	}
	for _, k := range []string{keyIngest, keyRead, keyAdmin, keyAll, keyNone} {
		if strings.Contains(s.logs.String(), k) {
			t.Errorf("logs show a key:\n%s", s.logs.String())
		}
	}
}

// A route the policy does not name requires admin.
func TestUnknownRouteNeedsAdmin(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	writeFile(t, file, testKeysFile)
	a, err := New(Config{KeysFile: file}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	scfg := config.Default().Serve
	scfg.Addr = "127.0.0.1:0"
	srv, err := serving.NewServer(scfg, serving.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetGuard(a)
	srv.Handle("GET /v1/new-thing", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	for key, want := range map[string]int{keyRead: 403, keyIngest: 403, keyAdmin: 204, "": 401} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/v1/new-thing", nil)
		if key != "" {
			req.Header.Set("X-API-Key", key)
		}
		srv.Handler().ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("key %q: %d, want %d", key, rec.Code, want)
		}
	}
}

// A file rewritten in place is taken only once two reloads read the same
// content: the truncated file of a rewrite in progress never revokes the
// keys. Reload is called by hand (no ticker), so this holds at any load.
func TestReloadWaitsForAStableFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	writeFile(t, file, keyRead+" read\n")
	a, err := New(Config{KeysFile: file, ReloadInterval: time.Hour}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	has := func(key string) bool { _, ok := a.Keys().Lookup(key); return ok }
	writeFile(t, file, "") // truncated: a rewrite in progress
	if err := a.Reload(); err != nil || !has(keyRead) {
		t.Fatalf("after reading the truncated file once: err %v, old key kept %v", err, has(keyRead))
	}
	writeFile(t, file, keyAll+" read,admin\n") // the rewrite done
	if err := a.Reload(); err != nil || !has(keyRead) || has(keyAll) {
		t.Fatalf("after reading the new file once: err %v, old key %v, new key %v", err, has(keyRead), has(keyAll))
	}
	if err := a.Reload(); err != nil || has(keyRead) || !has(keyAll) {
		t.Fatalf("after reading the new file twice: err %v, old key %v, new key %v", err, has(keyRead), has(keyAll))
	}
}

// The keys file is re-read when it changes; a broken file keeps the
// previous keys, says so in the metric and in one log line, and a fixed file
// is taken again.
func TestKeysFileReload(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keys")
	writeFile(t, file, keyRead+" read\n")
	s := newTestServer(t, file)
	rec := s.url + "/v1/recommendations?user_id=u1"
	status := func(key string) int { return send(t, nil, "GET", rec, bearer(key), "").status }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if status(keyRead) != 200 || status(keyAll) != 401 {
		t.Fatal("initial keys not in force")
	}

	// A key added, the old one revoked (written to a temporary file and
	// renamed, as configuration management does).
	tmp := filepath.Join(dir, "keys.tmp")
	writeFile(t, tmp, keyAll+" read,admin\n")
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	waitFor("new key accepted", func() bool { return status(keyAll) == 200 })
	if got := status(keyRead); got != 401 {
		t.Errorf("revoked key: %d, want 401", got)
	}
	if testutil.ToFloat64(s.auth.m.keys) != 1 || testutil.ToFloat64(s.auth.m.fileOK) != 1 {
		t.Errorf("keys %v, file ok %v", testutil.ToFloat64(s.auth.m.keys), testutil.ToFloat64(s.auth.m.fileOK))
	}

	// Broken: the previous keys stay. (Renamed into place: a rewrite in
	// place can be read empty by two polls 20 ms apart on a loaded machine,
	// which would rightly be taken; TestReloadWaitsForAStableFile covers
	// rewrites in place without a clock.)
	writeFile(t, tmp, keyAll+" read,admin\n"+keyRead+" reed\n")
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	waitFor("broken file noticed", func() bool { return testutil.ToFloat64(s.auth.m.fileOK) == 0 })
	time.Sleep(100 * time.Millisecond) // several more polls of the same broken file
	if got := status(keyAll); got != 200 {
		t.Errorf("key of the previous file: %d, want 200", got)
	}
	if got := status(keyRead); got != 401 {
		t.Errorf("key of the broken file: %d, want 401", got)
	}
	if n := strings.Count(s.logs.String(), "api keys file rejected"); n != 1 {
		t.Errorf("broken file logged %d times, want once (rate-limited):\n%s", n, s.logs.String())
	}
	if !strings.Contains(s.logs.String(), `unknown scope \"reed\"`) {
		t.Errorf("log does not say what is wrong:\n%s", s.logs.String())
	}
	m := send(t, nil, "GET", s.url+"/metrics", bearer(keyAll), "")
	for _, want := range []string{"lambdarec_auth_keys_file_ok 0", "lambdarec_auth_keys 1", `lambdarec_auth_keys_reloads_total{result="error"}`} {
		if !strings.Contains(m.body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// Removed: still the previous keys.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if got := status(keyAll); got != 200 {
		t.Errorf("after the file was removed: %d, want 200", got)
	}

	// Fixed: taken.
	writeFile(t, file, keyRead+" read\n")
	waitFor("fixed file taken", func() bool { return status(keyRead) == 200 })
	if got := status(keyAll); got != 401 {
		t.Errorf("key no longer in the file: %d", got)
	}
	if testutil.ToFloat64(s.auth.m.fileOK) != 1 {
		t.Error("file ok not back to 1")
	}
	for _, k := range []string{keyRead, keyAll} {
		if strings.Contains(s.logs.String(), k) {
			t.Errorf("logs show a key:\n%s", s.logs.String())
		}
	}
}

func TestNewRejects(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	writeFile(t, bad, "secret-0123456789abcdef everything\n")
	for _, cfg := range []Config{
		{},
		{KeysFile: filepath.Join(dir, "missing")},
		{KeysFile: bad},
		{KeysFile: bad, ReloadInterval: -time.Second},
	} {
		a, err := New(cfg, Deps{})
		if err == nil {
			t.Errorf("New(%+v) = %v, want an error", cfg, a)
		} else if strings.Contains(err.Error(), "secret-0123456789abcdef") {
			t.Errorf("error shows the key: %v", err)
		}
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

// FuzzParseKeys: any file parses or fails without panicking; a parsed file
// finds each of its keys with the scopes of its line, and errors never
// contain a line's first word (the key).
func FuzzParseKeys(f *testing.F) {
	f.Add(testKeysFile)
	f.Add("secret-0123456789abcdef write\n")
	f.Add("k-0123456789abcdef read,,admin # x\n\n#only\n")
	f.Add("k-0123456789abcdef\tingest\r\nk-0123456789abcdeg read\r\n")
	f.Add("first-key-0123456789 second-key-0123456789\n")
	f.Fuzz(func(t *testing.T, file string) {
		k, err := ParseKeys(strings.NewReader(file))
		if err != nil {
			// No word long enough to be a key shows in the error.
			for _, w := range strings.FieldsFunc(file, func(r rune) bool { return unicode.IsSpace(r) || r == ',' }) {
				if len(w) >= MinKeyLen && strings.Contains(err.Error(), w) {
					t.Fatalf("error %q shows %q", err, w)
				}
			}
			return
		}
		for _, line := range strings.Split(file, "\n") {
			fs := strings.Fields(line)
			if len(fs) < 2 || strings.HasPrefix(fs[0], "#") {
				continue
			}
			if _, ok := k.Lookup(fs[0]); !ok {
				t.Fatalf("key of line %q not found", line)
			}
		}
	})
}
