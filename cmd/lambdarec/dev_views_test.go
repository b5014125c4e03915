package main

import (
	"os"
	"testing"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/speed"
)

// dev writes unscored views (config.DevScoreViews: speed.score_views
// false) where the configuration does not set speed.score_views, and keeps
// a value the file or the environment writes, even the production default;
// the speed layer it builds then has NoViewScores set. `lambdarec speed`
// keeps scoring views by default.
func TestDevScoreViewsOff(t *testing.T) {
	d := config.Default()
	if !d.Speed.ScoreViews || speed.FromConfig(&d).NoViewScores {
		t.Fatalf("production default: score_views %v, NoViewScores %v", d.Speed.ScoreViews, speed.FromConfig(&d).NoViewScores)
	}
	path := t.TempDir() + "/c.yml"
	if err := os.WriteFile(path, []byte("speed:\n  score_views: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		path string
		env  []string
		want bool
	}{
		{"unset", "", nil, config.DevScoreViews},
		{"file", path, nil, true},
		{"env", "", []string{"LAMBDAREC_SPEED_SCORE_VIEWS=true"}, true},
		{"env off", "", []string{"LAMBDAREC_SPEED_SCORE_VIEWS=false"}, false},
	} {
		in, err := config.Load(c.path, c.env)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := devConfig(in, devOptions{dataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Speed.ScoreViews; got != c.want {
			t.Errorf("%s: score_views %v, want %v", c.name, got, c.want)
		}
		if sc := speed.FromConfig(&cfg); sc.NoViewScores != !c.want {
			t.Errorf("%s: speed NoViewScores %v with score_views %v", c.name, sc.NoViewScores, c.want)
		}
	}
}
