package main

import (
	"os"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/speed"
)

// dev scores every read at read time, so where the configuration leaves
// them at their defaults it turns rescoring off (config.DevRescoreInterval)
// and writes unscored views (config.DevScoreViews: speed.score_views
// false), and keeps a value the file or the environment writes, even the
// production default; the speed layer it builds then has NoRescore and
// NoViewScores set accordingly. `lambdarec speed` keeps both on by default.
func TestDevReadTimeDefaults(t *testing.T) {
	d := config.Default()
	if sc := speed.FromConfig(&d); d.Speed.RescoreInterval != config.DefaultRescoreInterval || sc.NoRescore || !d.Speed.ScoreViews || sc.NoViewScores {
		t.Fatalf("production defaults: rescore_interval %s, score_views %v, speed %+v", d.Speed.RescoreInterval, d.Speed.ScoreViews, sc)
	}
	path := t.TempDir() + "/c.yml"
	if err := os.WriteFile(path, []byte("speed:\n  rescore_interval: 250ms\n  score_views: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		path    string
		env     []string
		rescore time.Duration
		score   bool
	}{
		{"unset", "", nil, config.DevRescoreInterval, config.DevScoreViews},
		{"file", path, nil, config.DefaultRescoreInterval, true},
		{"env rescore", "", []string{"LAMBDAREC_SPEED_RESCORE_INTERVAL=1s"}, time.Second, config.DevScoreViews},
		{"env score_views", "", []string{"LAMBDAREC_SPEED_SCORE_VIEWS=true"}, config.DevRescoreInterval, true},
		{"env score_views off", "", []string{"LAMBDAREC_SPEED_SCORE_VIEWS=false"}, config.DevRescoreInterval, false},
	} {
		in, err := config.Load(c.path, c.env)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := devConfig(in, devOptions{dataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Speed.RescoreInterval; got != c.rescore {
			t.Errorf("%s: rescore_interval %s, want %s", c.name, got, c.rescore)
		}
		if got := cfg.Speed.ScoreViews; got != c.score {
			t.Errorf("%s: score_views %v, want %v", c.name, got, c.score)
		}
		sc := speed.FromConfig(&cfg)
		if sc.NoViewScores != !c.score {
			t.Errorf("%s: speed NoViewScores %v with score_views %v", c.name, sc.NoViewScores, c.score)
		}
		// Unscored views leave nothing to rescore (speed.Config.NoViewScores).
		if sc.NoRescore != (c.rescore == 0) && c.score {
			t.Errorf("%s: speed NoRescore %v with rescore_interval %s", c.name, sc.NoRescore, c.rescore)
		}
	}
}
