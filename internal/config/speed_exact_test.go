package config

import (
	"strings"
	"testing"
	"time"
)

func TestSpeedExactKeys(t *testing.T) {
	d := Default()
	if d.Speed.RescoreInterval != 250*time.Millisecond || d.Speed.DeltasTopic != "" {
		t.Errorf("defaults: rescore_interval %s, deltas_topic %q", d.Speed.RescoreInterval, d.Speed.DeltasTopic)
	}
	cfg, err := Load("testdata/speed_exact.good.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Speed.RescoreInterval != time.Second || cfg.Speed.DeltasTopic != "events.speed-deltas-eu" {
		t.Errorf("file: %+v", cfg.Speed)
	}
	cfg, err = Load("", []string{"LAMBDAREC_SPEED_RESCORE_INTERVAL=40ms", "LAMBDAREC_SPEED_DELTAS_TOPIC=shared"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Speed.RescoreInterval != 40*time.Millisecond || cfg.Speed.DeltasTopic != "shared" {
		t.Errorf("env not applied: %+v", cfg.Speed)
	}
	// 0 turns rescoring off: accepted, kept as 0.
	cfg, err = Load("", []string{"LAMBDAREC_SPEED_RESCORE_INTERVAL=0s"})
	if err != nil || cfg.Speed.RescoreInterval != 0 || !cfg.IsSet("speed.rescore_interval") {
		t.Errorf("rescore_interval 0 (off): err %v, %+v", err, cfg)
	}
	for env, want := range map[string]string{
		"LAMBDAREC_SPEED_RESCORE_INTERVAL=-1s":    "speed.rescore_interval",
		"LAMBDAREC_SPEED_DELTAS_TOPIC=events.dlq": "speed.deltas_topic",
		"LAMBDAREC_SPEED_DELTAS_TOPIC=a/b":        "speed.deltas_topic",
	} {
		if _, err := Load("", []string{env}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want one naming %s", env, err, want)
		}
	}
}
