package backend_test

import (
	"os"
	"testing"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/backend"
	"github.com/lambdarec/lambdarec/internal/store/clickhouse"
)

func TestOpenMemory(t *testing.T) {
	s, err := backend.Open(t.Context(), config.Default(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*store.Memory); !ok {
		t.Errorf("default backend is %T, want *store.Memory", s)
	}
}

func TestOpenUnknown(t *testing.T) {
	cfg := config.Default()
	cfg.Store.Backend = "memcached"
	if s, err := backend.Open(t.Context(), cfg, nil); err == nil {
		s.Close()
		t.Error("Open(memcached) = nil error")
	}
}

// TestOpenClickHouse needs the server .ci/clickhouse.sh starts; CI sets
// LAMBDAREC_CLICKHOUSE_DSN.
func TestOpenClickHouse(t *testing.T) {
	dsn := os.Getenv("LAMBDAREC_CLICKHOUSE_DSN")
	if dsn == "" {
		t.Skip("LAMBDAREC_CLICKHOUSE_DSN is not set; run .ci/clickhouse.sh")
	}
	cfg, err := config.Load("", []string{"LAMBDAREC_STORE_BACKEND=clickhouse", "LAMBDAREC_CLICKHOUSE_DSN=" + dsn})
	if err != nil {
		t.Fatal(err)
	}
	s, err := backend.Open(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*clickhouse.Store); !ok {
		t.Errorf("backend is %T, want *clickhouse.Store", s)
	}
	if _, _, err := s.CurrentBatch(t.Context()); err != nil {
		t.Errorf("CurrentBatch: %v", err)
	}
}
