package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpeedScoreToken: the token of speed.score_token_file or _env, none
// by default; both set, or a LAMBDAREC_ variable, is an error; an error
// never shows the token.
func TestSpeedScoreToken(t *testing.T) {
	d := Default()
	if tok, err := d.SpeedScoreToken(); err != nil || tok != "" {
		t.Fatalf("default: %q, %v", tok, err)
	}
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte("  t0ken-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load("", []string{"LAMBDAREC_SPEED_SCORE_TOKEN_FILE=" + f})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := cfg.SpeedScoreToken(); err != nil || tok != "t0ken-from-file" {
		t.Fatalf("file: %q, %v", tok, err)
	}
	t.Setenv("SPEED_SCORE_SECRET", "t0ken-from-env")
	cfg, err = Load("", []string{"LAMBDAREC_SPEED_SCORE_TOKEN_ENV=SPEED_SCORE_SECRET", "SPEED_SCORE_SECRET=t0ken-from-env"})
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := cfg.SpeedScoreToken(); err != nil || tok != "t0ken-from-env" {
		t.Fatalf("env: %q, %v", tok, err)
	}
	for _, env := range [][]string{
		{"LAMBDAREC_SPEED_SCORE_TOKEN_FILE=" + f, "LAMBDAREC_SPEED_SCORE_TOKEN_ENV=X"},
		{"LAMBDAREC_SPEED_SCORE_TOKEN_ENV=LAMBDAREC_SPEED_GROUP"},
	} {
		if _, err := Load("", env); err == nil || !strings.Contains(err.Error(), "speed.score_token") {
			t.Errorf("%v: err %v, want one naming speed.score_token", env, err)
		}
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Speed.ScoreTokenFile, cfg.Speed.ScoreTokenEnv = empty, ""
	if _, err := cfg.SpeedScoreToken(); err == nil {
		t.Fatal("an empty token file was accepted")
	}
	cfg.Speed.ScoreTokenFile, cfg.Speed.ScoreTokenEnv = "", "SPEED_SCORE_UNSET_VAR"
	if _, err := cfg.SpeedScoreToken(); err == nil || strings.Contains(err.Error(), "t0ken") {
		t.Fatalf("unset variable: %v", err)
	}
}
