package config

import "testing"

func TestBatchMetricsAddr(t *testing.T) {
	cfg, err := Load("testdata/batch_metrics.good.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Batch.MetricsAddr != "127.0.0.1:9466" {
		t.Errorf("batch.metrics_addr = %q", cfg.Batch.MetricsAddr)
	}
	if Default().Batch.MetricsAddr != "" {
		t.Errorf("batch.metrics_addr is on by default: %q", Default().Batch.MetricsAddr)
	}
	cfg, err = Load("testdata/batch_metrics.good.yml", []string{"LAMBDAREC_BATCH_METRICS_ADDR=:9999"})
	if err != nil || cfg.Batch.MetricsAddr != ":9999" {
		t.Errorf("env override: %q, %v", cfg.Batch.MetricsAddr, err)
	}
	if _, err := Load("", []string{"LAMBDAREC_BATCH_METRICS_ADDR=nowhere"}); err == nil {
		t.Error("batch.metrics_addr without a port is accepted")
	}
}
