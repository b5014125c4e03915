package config

import "testing"

func TestDevMemoryKeys(t *testing.T) {
	d := Default()
	if d.Store.Memory.MaxSessionBytes != 256<<20 || d.Dev.MaxMemory != 1536<<20 {
		t.Fatalf("defaults: store.memory.max_session_bytes %d, dev.max_memory %d", d.Store.Memory.MaxSessionBytes, d.Dev.MaxMemory)
	}
	cfg, err := Load("testdata/dev.good.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Memory.MaxSessionBytes != 64<<20 || cfg.Dev.MaxMemory != 0 {
		t.Fatalf("file: store.memory.max_session_bytes %d, dev.max_memory %d", cfg.Store.Memory.MaxSessionBytes, cfg.Dev.MaxMemory)
	}
	cfg, err = Load("", []string{"LAMBDAREC_STORE_MEMORY_MAX_SESSION_BYTES=2097152", "LAMBDAREC_DEV_MAX_MEMORY=1073741824"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Memory.MaxSessionBytes != 2<<20 || cfg.Dev.MaxMemory != 1<<30 {
		t.Fatalf("env: store.memory.max_session_bytes %d, dev.max_memory %d", cfg.Store.Memory.MaxSessionBytes, cfg.Dev.MaxMemory)
	}
	for _, f := range []string{"testdata/dev_memory.bad.yml", "testdata/store_memory.bad.yml", "testdata/store_memory_unknown.bad.yml"} {
		if _, err := Load(f, nil); err == nil {
			t.Errorf("%s accepted", f)
		}
	}
	for _, env := range []string{"LAMBDAREC_DEV_MAX_MEMORY=1000", "LAMBDAREC_STORE_MEMORY_MAX_SESSION_BYTES=-1"} {
		if _, err := Load("", []string{env}); err == nil {
			t.Errorf("%s accepted", env)
		}
	}
}
