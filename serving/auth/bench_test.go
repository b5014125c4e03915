package auth

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/serving"
)

// BenchmarkGuard is the cost of API keys on a request: a trivial endpoint on
// a serving.Server, open (keys=0) beside guarded with keys files of 1 to
// 1000 keys (every key is compared, whatever matches).
func BenchmarkGuard(b *testing.B) {
	for _, n := range []int{0, 1, 10, 100, 1000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			scfg := config.Default().Serve
			scfg.Addr = "127.0.0.1:0"
			srv, err := serving.NewServer(scfg, serving.Deps{})
			if err != nil {
				b.Fatal(err)
			}
			var key string
			if n > 0 {
				var sb strings.Builder
				for i := range n {
					key = fmt.Sprintf("bench-key-%08d-0123456789", i)
					fmt.Fprintf(&sb, "%s read\n", key)
				}
				file := filepath.Join(b.TempDir(), "keys")
				if err := os.WriteFile(file, []byte(sb.String()), 0o600); err != nil {
					b.Fatal(err)
				}
				a, err := New(Config{KeysFile: file}, Deps{})
				if err != nil {
					b.Fatal(err)
				}
				srv.SetGuard(a)
			}
			srv.Handle(serving.RouteRecommendations, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusNoContent)
			}))
			h := srv.Handler()
			req := httptest.NewRequest(http.MethodGet, "/v1/recommendations?user_id=u1", nil)
			if key != "" {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w.code = 0
				h.ServeHTTP(w, req)
			}
			b.StopTimer()
			if w.code != http.StatusNoContent {
				b.Fatalf("status %d", w.code)
			}
		})
	}
}

type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(c int)           { d.code = c }

// BenchmarkLookup is Keys.Lookup alone (SHA-256 of the key and the
// constant-time compare), for key sets of 1 and 100,000 keys.
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{1, 100_000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			var sb strings.Builder
			for i := range n {
				fmt.Fprintf(&sb, "bench-key-%08d-0123456789 read\n", i)
			}
			k, err := ParseKeys(strings.NewReader(sb.String()))
			if err != nil {
				b.Fatal(err)
			}
			key := fmt.Sprintf("bench-key-%08d-0123456789", n-1)
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := k.Lookup(key); !ok {
					b.Fatal("key not found")
				}
			}
		})
	}
}
