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
	storeGoesDown(t, st, srv.Stop)
}
