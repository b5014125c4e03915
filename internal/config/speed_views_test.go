package config

import "testing"

func TestSpeedScoreViewsKey(t *testing.T) {
	d := Default()
	if !d.Speed.ScoreViews || d.IsSet("speed.score_views") {
		t.Errorf("default: score_views %v, set %v", d.Speed.ScoreViews, d.IsSet("speed.score_views"))
	}
	cfg, err := Load("testdata/speed_views.good.yml", nil)
	if err != nil || cfg.Speed.ScoreViews || !cfg.IsSet("speed.score_views") {
		t.Errorf("file: score_views %v, %v", cfg.Speed.ScoreViews, err)
	}
	cfg, err = Load("", []string{"LAMBDAREC_SPEED_SCORE_VIEWS=false"})
	if err != nil || cfg.Speed.ScoreViews || !cfg.IsSet("speed.score_views") {
		t.Errorf("env false: score_views %v, %v", cfg.Speed.ScoreViews, err)
	}
	cfg, err = Load("testdata/speed_views.good.yml", []string{"LAMBDAREC_SPEED_SCORE_VIEWS=true"})
	if err != nil || !cfg.Speed.ScoreViews {
		t.Errorf("env true over the file: score_views %v, %v", cfg.Speed.ScoreViews, err)
	}
	if _, err := Load("", []string{"LAMBDAREC_SPEED_SCORE_VIEWS=sometimes"}); err == nil {
		t.Error("LAMBDAREC_SPEED_SCORE_VIEWS=sometimes accepted")
	}
}
