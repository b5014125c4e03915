package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// serve's read-time scoring keys: off by default with a 50ms timeout, set
// from the environment (the token's variable is a secret, not a key), and
// validated.
func TestSpeedScorers(t *testing.T) {
	d := Default()
	if len(d.Serve.SpeedScorers) != 0 || d.Serve.SpeedScoreTimeout != 50*time.Millisecond {
		t.Fatalf("defaults: %q, %s", d.Serve.SpeedScorers, d.Serve.SpeedScoreTimeout)
	}
	cfg, err := Load("", []string{
		"LAMBDAREC_SERVE_SPEED_SCORERS=http://speed-0.speed:9464, https://speed-1.speed:9464/base",
		"LAMBDAREC_SERVE_SPEED_SCORE_TIMEOUT=20ms",
		"LAMBDAREC_SERVE_SPEED_SCORE_TOKEN_ENV=SCORE_TOKEN",
		"SCORE_TOKEN=s3cret",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Serve.SpeedScorers, []string{"http://speed-0.speed:9464", "https://speed-1.speed:9464/base"}) ||
		cfg.Serve.SpeedScoreTimeout != 20*time.Millisecond || cfg.Serve.SpeedScoreTokenEnv != "SCORE_TOKEN" {
		t.Fatalf("env not applied: %+v", cfg.Serve)
	}
	for name, c := range map[string]struct {
		mut  func(*Serve)
		want string
	}{
		"zero timeout":     {func(s *Serve) { s.SpeedScoreTimeout = 0 }, "serve.speed_score_timeout"},
		"negative timeout": {func(s *Serve) { s.SpeedScoreTimeout = -time.Second }, "serve.speed_score_timeout"},
		"no scheme":        {func(s *Serve) { s.SpeedScorers = []string{"speed-0:9464"} }, "serve.speed_scorers[0]"},
		"other scheme":     {func(s *Serve) { s.SpeedScorers = []string{"ftp://speed-0:9464"} }, "serve.speed_scorers[0]"},
		"no host":          {func(s *Serve) { s.SpeedScorers = []string{"http://"} }, "serve.speed_scorers[0]"},
		"user in URL":      {func(s *Serve) { s.SpeedScorers = []string{"http://a:pw@speed-0:9464"} }, "serve.speed_scorers[0]"},
		"twice":            {func(s *Serve) { s.SpeedScorers = []string{"http://a:1", "http://a:1"} }, "serve.speed_scorers[1]"},
		"file and env":     {func(s *Serve) { s.SpeedScoreTokenFile, s.SpeedScoreTokenEnv = "/t", "T" }, "serve.speed_score_token_file"},
		"config variable":  {func(s *Serve) { s.SpeedScoreTokenEnv = "LAMBDAREC_TOKEN" }, "serve.speed_score_token_env"},
	} {
		cfg := Default()
		c.mut(&cfg.Serve)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("%s: the error shows the URL's password: %v", name, err)
		}
	}
}
