package main

import (
	"os"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/speed"
)

// dev turns rescoring off (config.DevRescoreInterval) where the
// configuration leaves speed.rescore_interval at its default, and keeps a
// value the file or the environment writes, even the production default;
// the speed layer it builds then has NoRescore set. `lambdarec speed` keeps
// the default on.
func TestDevRescoreOff(t *testing.T) {
	d := config.Default()
	if d.Speed.RescoreInterval != config.DefaultRescoreInterval || speed.FromConfig(&d).NoRescore {
		t.Fatalf("production default: rescore_interval %s, NoRescore %v", d.Speed.RescoreInterval, speed.FromConfig(&d).NoRescore)
	}
	path := t.TempDir() + "/c.yml"
	if err := os.WriteFile(path, []byte("speed:\n  rescore_interval: 250ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		path string
		env  []string
		want time.Duration
	}{
		{"unset", "", nil, config.DevRescoreInterval},
		{"file", path, nil, config.DefaultRescoreInterval},
		{"env", "", []string{"LAMBDAREC_SPEED_RESCORE_INTERVAL=1s"}, time.Second},
	} {
		in, err := config.Load(c.path, c.env)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := devConfig(in, devOptions{dataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Speed.RescoreInterval; got != c.want {
			t.Errorf("%s: rescore_interval %s, want %s", c.name, got, c.want)
		}
		if sc := speed.FromConfig(&cfg); sc.NoRescore != (c.want == 0) {
			t.Errorf("%s: speed NoRescore %v with rescore_interval %s", c.name, sc.NoRescore, c.want)
		}
	}
}
