package local

import (
	"path/filepath"
	"testing"

	"github.com/lambdarec/lambdarec/internal/config"
)

// TestShippedConfigs loads the configuration files the deployment ships —
// the local topology's and the Kubernetes ConfigMaps' — with the
// environment the Kubernetes workloads set, as every role does at start.
func TestShippedConfigs(t *testing.T) {
	files, _ := filepath.Glob("*.yml")
	files = append(files, "../k8s/base/lambdarec.yml", "../k8s/overlays/dev/lambdarec.yml", "../k8s/overlays/production/lambdarec.yml")
	if len(files) < 8 {
		t.Fatalf("only %d files: %v", len(files), files)
	}
	env := []string{
		"LAMBDAREC_ICEBERG_CATALOG_URI=postgres://lambdarec:secret@postgres:5432/iceberg?sslmode=require",
		"LAMBDAREC_CLICKHOUSE_DSN=clickhouse://clickhouse:9000/lambdarec",
		"LAMBDAREC_SPEED_INSTANCE_ID=lambdarec-speed-0",
	}
	for _, f := range files {
		cfg, err := config.Load(f, env)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if cfg.Store.Backend != "clickhouse" {
			t.Errorf("%s: store.backend %q: speed's view would not reach serve", f, cfg.Store.Backend)
		}
	}
}
