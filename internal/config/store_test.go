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
