package config

import "testing"

func TestBatchMaxMemory(t *testing.T) {
	cfg, err := Load("testdata/batch_memory.good.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Batch.MaxMemory != 512<<20 {
		t.Fatalf("batch.max_memory = %d", cfg.Batch.MaxMemory)
	}
	if d := Default().Batch.MaxMemory; d != 1<<30 {
		t.Fatalf("default batch.max_memory = %d", d)
	}
	cfg, err = Load("testdata/empty.good.yml", []string{"LAMBDAREC_BATCH_MAX_MEMORY=2147483648"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Batch.MaxMemory != 2<<30 {
		t.Fatalf("LAMBDAREC_BATCH_MAX_MEMORY: batch.max_memory = %d", cfg.Batch.MaxMemory)
	}
	if _, err := Load("testdata/empty.good.yml", []string{"LAMBDAREC_BATCH_MAX_MEMORY=1000"}); err == nil {
		t.Fatal("a bound of 1000 bytes was accepted")
	}
}
