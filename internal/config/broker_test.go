package config

import "testing"

func TestBrokerRetentionBytes(t *testing.T) {
	cfg, err := Load("testdata/broker_retention.good.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Broker.RetentionBytes != 8<<20 {
		t.Fatalf("broker.retention_bytes = %d", cfg.Broker.RetentionBytes)
	}
	if d := Default().Broker.RetentionBytes; d != 64<<20 {
		t.Fatalf("default broker.retention_bytes = %d", d)
	}
	for env, want := range map[string]int64{"LAMBDAREC_BROKER_RETENTION_BYTES=0": 0, "LAMBDAREC_BROKER_RETENTION_BYTES=2097152": 2 << 20} {
		cfg, err = Load("testdata/empty.good.yml", []string{env})
		if err != nil {
			t.Fatalf("%s: %v", env, err)
		}
		if cfg.Broker.RetentionBytes != want {
			t.Fatalf("%s: broker.retention_bytes = %d", env, cfg.Broker.RetentionBytes)
		}
	}
	if _, err := Load("testdata/empty.good.yml", []string{"LAMBDAREC_BROKER_RETENTION_BYTES=1000"}); err == nil {
		t.Fatal("a bound of 1000 bytes was accepted")
	}
}
