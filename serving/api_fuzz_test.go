package serving

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"

	"github.com/lambdarec/lambdarec/internal/store"
)

// fuzzFixture is the seeded server the fuzz targets hit; its sessions'
// purchases are checked against every answer.
func fuzzFixture(t *testing.F) (http.Handler, map[string][]string) {
	st := seeded(t, func(testing.TB) store.Store { return store.NewMemory() })
	f := newFixture(t, st, APIConfig{})
	purchased := map[string][]string{}
	for _, s := range fixtureSessions() {
		purchased[s.SessionID] = s.Purchased
	}
	return f.h, purchased
}

// serveRaw serves a GET of path and rawQuery as a client could send them,
// without the parsing httptest.NewRequest would refuse.
func serveRaw(h http.Handler, path, rawQuery string) *httptest.ResponseRecorder {
	r := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Path: path, RawQuery: rawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
		Host:       "lambdarec.test",
		RequestURI: path + "?" + rawQuery,
		RemoteAddr: "192.0.2.1:1234",
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// checkNo5xx fails on a 5xx, and on an error answer that is not the JSON
// envelope.
func checkNo5xx(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code >= 500 {
		t.Fatalf("status %d for bad input: %s", w.Code, w.Body)
	}
	if w.Code >= 400 {
		var e struct {
			Error Error `json:"error"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("status %d with body %q: not a JSON error (%v)", w.Code, w.Body, err)
		}
	}
}

func FuzzRecommendations(f *testing.F) {
	for _, q := range []string{
		"user_id=u1", "session_id=s-new&k=7", "session_id=s-buyer&user_id=u2&k=100", "user_id=u1&k=0",
		"k=5", "user_id=%ff", "user_id=a;b", "user_id=a&user_id=b", "x=1", "session_id=s-anon&k=", "&&&",
		"user_id=%E2%9C%93&session_id=s+new", "session_id=s-p2&k=99999999999999999999",
	} {
		f.Add(q)
	}
	h, purchased := fuzzFixture(f)
	rank := map[string]int{SourceSpeed: 0, SourceBatch: 1, SourcePopular: 2}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		w := serveRaw(h, "/v1/recommendations", rawQuery)
		checkNo5xx(t, w)
		if w.Code != http.StatusOK {
			if w.Code != http.StatusBadRequest {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			return
		}
		var got Recommendations
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatalf("body %q: %v", w.Body, err)
		}
		if got.Items == nil || len(got.Items) > got.K || got.K < 1 || got.K > 100 {
			t.Fatalf("k %d, %d items", got.K, len(got.Items))
		}
		seen := map[string]bool{}
		last := 0
		for _, it := range got.Items {
			r, ok := rank[it.Source]
			if !ok || r < last {
				t.Fatalf("source %q out of order: %v", it.Source, pairs(got.Items))
			}
			last = r
			if seen[it.Item] {
				t.Fatalf("item %q twice: %v", it.Item, pairs(got.Items))
			}
			seen[it.Item] = true
			if slices.Contains(purchased[got.SessionID], it.Item) {
				t.Fatalf("item %q was bought in session %q", it.Item, got.SessionID)
			}
		}
	})
}

func FuzzSimilar(f *testing.F) {
	for _, c := range [][2]string{
		{"i1", ""}, {"i1", "k=2"}, {"unknown", "k=100"}, {"", ""}, {"a/b", ""}, {"\xff", ""},
		{"..", ""}, {"i1", "k=0"}, {"i1", "k=1&k=2"}, {"i1", "user_id=u1"}, {"%zz", "k=%zz"},
	} {
		f.Add(c[0], c[1])
	}
	h, _ := fuzzFixture(f)
	f.Fuzz(func(t *testing.T, item, rawQuery string) {
		w := serveRaw(h, "/v1/items/"+item+"/similar", rawQuery)
		checkNo5xx(t, w)
		if w.Code != http.StatusOK {
			return
		}
		var got Similar
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatalf("body %q: %v", w.Body, err)
		}
		if got.Items == nil || len(got.Items) > got.K || got.ItemID == "" || len(got.ItemID) > MaxIDLen {
			t.Fatalf("answer %+v", got)
		}
	})
}
