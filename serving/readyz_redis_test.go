package serving

import (
	"context"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store/redis"
	"github.com/lambdarec/lambdarec/internal/store/redis/redistest"
)

// TestReadyzRedisDown serves from the Redis store on a private redis-server,
// then kills the server: /readyz turns 503 naming the store, reads get 503
// store_unavailable (not an empty 200 from the caches), and /v1/status
// reports the store down.
func TestReadyzRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	st, err := redis.New(context.Background(), redis.Config{Addr: srv.Addr, RefreshInterval: time.Hour, Timeout: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	f := newFixture(t, st, APIConfig{StoreTimeout: 3 * time.Second})
	if r := get(t, f.h, "/v1/items/i1/similar"); r.status != 200 {
		t.Fatalf("similar with the store up: %d %s", r.status, r.body)
	}
	if r := get(t, f.h, "/readyz"); r.status != 200 {
		t.Fatalf("/readyz with the store up: %d %s", r.status, r.body)
	}
	srv.Stop()
	time.Sleep(storeHealthTTL + 100*time.Millisecond) // the last good check expires
	storeDown(t, f)
}
