package config

import (
	"testing"
	"time"
)

func TestStoreSection(t *testing.T) {
	cfg, err := Load("testdata/store.good.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := ClickHouse{DSN: "clickhouse://clickhouse-1:9000/lambdarec?dial_timeout=5s", CacheEntries: 1_000_000, RefreshInterval: 500 * time.Millisecond, KeepBatches: 3}
	if cfg.Store.Backend != "clickhouse" || cfg.ClickHouse != want {
		t.Errorf("store = %+v, clickhouse = %+v; want clickhouse, %+v", cfg.Store, cfg.ClickHouse, want)
	}
	if d := Default(); d.Store.Backend != "memory" {
		t.Errorf("default backend = %q, want memory", d.Store.Backend)
	}
}

// CI exports LAMBDAREC_CLICKHOUSE_DSN for the ClickHouse store tests; it must
// be a valid override for every command too.
func TestClickHouseDSNFromEnv(t *testing.T) {
	cfg, err := Load("", []string{"LAMBDAREC_CLICKHOUSE_DSN=clickhouse://127.0.0.1:9000/default", "LAMBDAREC_STORE_BACKEND=clickhouse"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClickHouse.DSN != "clickhouse://127.0.0.1:9000/default" || cfg.Store.Backend != "clickhouse" {
		t.Errorf("env overrides not applied: %+v %+v", cfg.Store, cfg.ClickHouse)
	}
}

func TestRedisSection(t *testing.T) {
	cfg, err := Load("testdata/redis.good.yml", []string{"LAMBDAREC_STORE_REDIS_DB=3", "LAMBDAREC_STORE_REDIS_SESSION_TTL=1h", "LAMBDAREC_STORE_REDIS_SESSION_CACHE_ENTRIES=30000"})
	if err != nil {
		t.Fatal(err)
	}
	want := Redis{
		Addr: "redis-1.internal:6380", Username: "lambdarec", PasswordFile: "/run/secrets/redis-password", DB: 3,
		TLS:    RedisTLS{Enabled: true, CAFile: "/etc/lambdarec/redis-ca.pem", ServerName: "redis.internal"},
		Prefix: "prod:", KeepBatches: 3, RefreshInterval: 500 * time.Millisecond, CacheEntries: 500_000, SessionCacheEntries: 30_000,
		PipelineSize: 500, PoolSize: 64, Timeout: 2 * time.Second, SessionTTL: time.Hour,
	}
	if cfg.Store.Backend != "redis" || cfg.Store.Redis != want {
		t.Errorf("store = %+v\nwant redis, %+v", cfg.Store, want)
	}
	if got := cfg.RedisSessionTTL(); got != time.Hour {
		t.Errorf("session TTL = %v, want 1h", got)
	}
	def := Default()
	if def.Store.Redis.Addr != "127.0.0.1:6379" || def.Store.Redis.Prefix != "lambdarec:" || def.Store.Redis.PipelineSize != 1000 || def.Store.Redis.SessionCacheEntries != 100_000 {
		t.Errorf("redis defaults = %+v", def.Store.Redis)
	}
	if got := def.RedisSessionTTL(); got != def.Speed.SessionTimeout {
		t.Errorf("default session TTL = %v, want speed.session_timeout %v", got, def.Speed.SessionTimeout)
	}
	// The password variable a *_env key names is not an unknown key.
	if _, err := Load("", []string{"LAMBDAREC_STORE_BACKEND=redis", "LAMBDAREC_STORE_REDIS_PASSWORD_ENV=REDIS_PASSWORD"}); err != nil {
		t.Errorf("password from the environment: %v", err)
	}
}
