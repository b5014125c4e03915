package config

import (
	"testing"
	"time"
)

func TestLimitsFile(t *testing.T) {
	cfg, err := Load("testdata/limits.good.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Serve
	if s.MaxInflightBytes != 256<<20 || s.MaxInflightRequests != 256 || s.MaxConnections != 1000 ||
		s.ReadTimeout != 10*time.Second || s.WriteTimeout != 20*time.Second {
		t.Errorf("serve = %+v", s)
	}
	if cfg.Speed.MaxStateBytes != 1<<30 {
		t.Errorf("speed.max_state_bytes = %d", cfg.Speed.MaxStateBytes)
	}
	if cfg.Status.MaxLag != (MaxLag{Records: 5000, Time: 2 * time.Minute}) {
		t.Errorf("status.max_lag = %+v", cfg.Status.MaxLag)
	}
}

func TestLimitsDefaultsAndEnv(t *testing.T) {
	d := Default()
	if d.Serve.MaxInflightBytes != 128<<20 || d.Serve.MaxInflightRequests != 1024 || d.Serve.MaxConnections != 4096 ||
		d.Speed.MaxStateBytes != 2<<30 || d.Status.MaxLag.Records != 100_000 || d.Status.MaxLag.Time != time.Minute {
		t.Errorf("defaults: serve %+v speed %d status %+v", d.Serve, d.Speed.MaxStateBytes, d.Status)
	}
	cfg, err := Load("", []string{
		"LAMBDAREC_SERVE_MAX_INFLIGHT_BYTES=33554432",
		"LAMBDAREC_SERVE_MAX_INFLIGHT_REQUESTS=7",
		"LAMBDAREC_SERVE_MAX_CONNECTIONS=9",
		"LAMBDAREC_SERVE_READ_TIMEOUT=3s",
		"LAMBDAREC_SERVE_WRITE_TIMEOUT=4s",
		"LAMBDAREC_SPEED_MAX_STATE_BYTES=2097152",
		"LAMBDAREC_STATUS_MAX_LAG_RECORDS=11",
		"LAMBDAREC_STATUS_MAX_LAG_TIME=5s",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Serve.MaxInflightBytes != 32<<20 || cfg.Serve.MaxInflightRequests != 7 || cfg.Serve.MaxConnections != 9 ||
		cfg.Serve.ReadTimeout != 3*time.Second || cfg.Serve.WriteTimeout != 4*time.Second ||
		cfg.Speed.MaxStateBytes != 2<<20 || cfg.Status.MaxLag != (MaxLag{Records: 11, Time: 5 * time.Second}) {
		t.Errorf("env not applied: serve %+v speed %d status %+v", cfg.Serve, cfg.Speed.MaxStateBytes, cfg.Status)
	}
	if _, err := Load("", []string{"LAMBDAREC_STATUS_MAX_LAG_TIME=-1s"}); err == nil {
		t.Error("negative status.max_lag.time accepted")
	}
}
