package readscore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// fakeScorer is a Scorer of our own: it answers each request with its
// recent items reversed (scores by rank), or err, after delay.
type fakeScorer struct {
	err   error
	delay time.Duration
	calls atomic.Int64
	last  atomic.Pointer[Request]
}

func (f *fakeScorer) ScoreRecent(ctx context.Context, req Request) (Result, error) {
	f.calls.Add(1)
	f.last.Store(&req)
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}
	if f.err != nil {
		return Result{}, f.err
	}
	return answer(req), nil
}

func answer(req Request) Result {
	res := Result{BatchID: "b7", ScoredAt: time.Date(2026, 12, 1, 6, 0, 0, 123, time.UTC), Explanation: []byte{1, 0}}
	for i := len(req.Recent) - 1; i >= 0; i-- {
		res.Items = append(res.Items, store.Scored{Item: req.Recent[i], Score: 1 / float64(i+1)})
	}
	return res
}

func newServer(t *testing.T, s Scorer, token string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("POST "+Path, Handler(s, token))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, auth, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+Path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func errCode(t *testing.T, body string) string {
	t.Helper()
	var eb errorBody
	if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
		t.Fatalf("not the error shape: %s (%v)", body, err)
	}
	return eb.Error.Code
}

// TestHandler: a request is decoded and answered as the types' JSON; bad
// input is a 400 in the error shape, a missing or wrong token a 401, a
// scorer not ready a 503 with Retry-After, another error a 500.
func TestHandler(t *testing.T) {
	f := &fakeScorer{}
	srv := newServer(t, f, "s3cret")
	const auth = "Bearer s3cret"

	code, _, body := post(t, srv.URL, auth, `{"recent":["a","b","c"],"purchased":["z"]}`)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var res Result
	if err := json.Unmarshal([]byte(body), &res); err != nil {
		t.Fatal(err)
	}
	want := answer(Request{Recent: []string{"a", "b", "c"}})
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("answer %+v, want %+v", res, want)
	}
	if got := *f.last.Load(); !reflect.DeepEqual(got, Request{Recent: []string{"a", "b", "c"}, Purchased: []string{"z"}}) {
		t.Fatalf("scorer got %+v", got)
	}

	long := `{"recent":["` + strings.Repeat("x", MaxBodyBytes) + `"]}`
	many := `{"recent":["a"` + strings.Repeat(`,"a"`, MaxRecent) + `]}`
	for _, bad := range []string{
		``, `{`, `[]`, `{"recent":[]}`, `{}`, `{"recent":["a"],"other":1}`, `{"recent":["a"]} {}`,
		`{"recent":[""]}`, `{"recent":["a"],"purchased":[""]}`, `{"recent":"a"}`, long, many,
		`{"recent":["` + strings.Repeat("y", MaxItemBytes+1) + `"]}`,
	} {
		n := f.calls.Load()
		code, _, body := post(t, srv.URL, auth, bad)
		if code != http.StatusBadRequest || errCode(t, body) != CodeBadRequest {
			t.Errorf("body %.40q: status %d %s, want 400 bad_request", bad, code, body)
		}
		if f.calls.Load() != n {
			t.Errorf("body %.40q: the scorer was called", bad)
		}
	}

	for _, a := range []string{"", "Bearer", "Bearer s3cre", "Basic s3cret", "bearer s3cret"} {
		code, h, body := post(t, srv.URL, a, `{"recent":["a"]}`)
		if code != http.StatusUnauthorized || errCode(t, body) != CodeUnauthorized || h.Get("WWW-Authenticate") == "" {
			t.Errorf("authorization %q: status %d %s, want 401", a, code, body)
		}
	}

	f.err = fmt.Errorf("%w: replaying", ErrNotReady)
	code, h, body := post(t, srv.URL, auth, `{"recent":["a"]}`)
	if code != http.StatusServiceUnavailable || errCode(t, body) != CodeNotReady || h.Get("Retry-After") == "" {
		t.Fatalf("not ready: status %d %v %s", code, h, body)
	}
	f.err = errors.New("boom")
	code, _, body = post(t, srv.URL, auth, `{"recent":["a"]}`)
	if code != http.StatusInternalServerError || errCode(t, body) != CodeInternal || strings.Contains(body, "boom") {
		t.Fatalf("error: status %d %s", code, body)
	}

	// GET is not served; without a token configured, none is asked for.
	resp, err := http.Get(srv.URL + Path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: status %d", resp.StatusCode)
	}
	open := newServer(t, &fakeScorer{}, "")
	if code, _, body := post(t, open.URL, "", `{"recent":["a"]}`); code != http.StatusOK {
		t.Fatalf("no token configured: status %d %s", code, body)
	}
}

// TestClient: the client scores through a member's handler, round robin
// over the members, moving on after a member down, not ready, failing or
// hanging (within its share of the timeout); ErrNotReady when every member
// is not ready; a bad request is not sent again.
func TestClient(t *testing.T) {
	ctx := context.Background()
	req := Request{Recent: []string{"a", "b"}, Purchased: []string{"c"}}
	ok1, ok2 := &fakeScorer{}, &fakeScorer{}
	s1, s2 := newServer(t, ok1, "tok"), newServer(t, ok2, "tok")

	c := NewClient([]string{s1.URL, s2.URL + "/"}, "tok", 2*time.Second, nil)
	for range 4 {
		res, err := c.ScoreRecent(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if want := answer(req); !reflect.DeepEqual(res, want) {
			t.Fatalf("answer %+v, want %+v", res, want)
		}
	}
	if ok1.calls.Load() != 2 || ok2.calls.Load() != 2 {
		t.Fatalf("not round robin: %d and %d calls", ok1.calls.Load(), ok2.calls.Load())
	}

	// A wrong token: 401 from each member, an error, not ErrNotReady.
	if _, err := NewClient([]string{s1.URL}, "nope", time.Second, nil).ScoreRecent(ctx, req); err == nil || errors.Is(err, ErrNotReady) {
		t.Fatalf("wrong token: %v", err)
	}

	// A member down, one not ready, one failing, one hanging: each call
	// reaches the good one, whichever it starts with.
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	notReady := newServer(t, &fakeScorer{err: ErrNotReady}, "tok")
	failing := newServer(t, &fakeScorer{err: errors.New("boom")}, "tok")
	hanging := newServer(t, &fakeScorer{delay: time.Minute}, "tok")
	good := &fakeScorer{}
	gs := newServer(t, good, "tok")
	c = NewClient([]string{down.URL, notReady.URL, failing.URL, hanging.URL, gs.URL}, "tok", 2500*time.Millisecond, nil)
	for i := range 5 {
		t0 := time.Now()
		res, err := c.ScoreRecent(ctx, req)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if !reflect.DeepEqual(res, answer(req)) {
			t.Fatalf("call %d: %+v", i, res)
		}
		if d := time.Since(t0); d > 2500*time.Millisecond {
			t.Fatalf("call %d took %s, over the timeout", i, d)
		}
	}
	if good.calls.Load() != 5 {
		t.Fatalf("good member called %d times", good.calls.Load())
	}

	// Every member not ready (or the only one): ErrNotReady.
	nr2 := newServer(t, &fakeScorer{err: fmt.Errorf("%w: stopping", ErrNotReady)}, "tok")
	if _, err := NewClient([]string{notReady.URL, nr2.URL}, "tok", time.Second, nil).ScoreRecent(ctx, req); !errors.Is(err, ErrNotReady) {
		t.Fatalf("every member not ready: %v", err)
	}
	if _, err := NewClient(nil, "", time.Second, nil).ScoreRecent(ctx, req); !errors.Is(err, ErrNotReady) {
		t.Fatalf("no member: %v", err)
	}
	// Not every member not ready: not ErrNotReady.
	if _, err := NewClient([]string{notReady.URL, failing.URL}, "tok", time.Second, nil).ScoreRecent(ctx, req); err == nil || errors.Is(err, ErrNotReady) {
		t.Fatalf("one not ready, one failing: %v", err)
	}

	// Hanging members: the call ends at the timeout.
	h2 := newServer(t, &fakeScorer{delay: time.Minute}, "tok")
	t0 := time.Now()
	if _, err := NewClient([]string{hanging.URL, h2.URL}, "tok", 300*time.Millisecond, nil).ScoreRecent(ctx, req); err == nil {
		t.Fatal("hanging members answered")
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Fatalf("hanging members: the call took %s", d)
	}

	// A bad request is refused before any member is asked.
	n := good.calls.Load()
	if _, err := c.ScoreRecent(ctx, Request{}); err == nil {
		t.Fatal("a request with no recent items was scored")
	}
	if good.calls.Load() != n {
		t.Fatal("a bad request was sent")
	}
}
