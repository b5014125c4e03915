package config

import "testing"

func TestSpeedExplanationsKey(t *testing.T) {
	if !Default().Speed.Explanations {
		t.Error("speed.explanations is off by default")
	}
	cfg, err := Load("testdata/speed_explain.good.yml", nil)
	if err != nil || cfg.Speed.Explanations {
		t.Errorf("file: explanations %v, %v", cfg.Speed.Explanations, err)
	}
	cfg, err = Load("", []string{"LAMBDAREC_SPEED_EXPLANATIONS=false"})
	if err != nil || cfg.Speed.Explanations {
		t.Errorf("env: explanations %v, %v", cfg.Speed.Explanations, err)
	}
	if _, err := Load("testdata/speed_explain.bad.yml", nil); err == nil {
		t.Error("explanations: sometimes accepted")
	}
	if _, err := Load("", []string{"LAMBDAREC_SPEED_EXPLANATIONS=sometimes"}); err == nil {
		t.Error("LAMBDAREC_SPEED_EXPLANATIONS=sometimes accepted")
	}
}
