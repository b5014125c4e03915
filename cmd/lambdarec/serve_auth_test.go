package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
)

// TestServeCommandWithKeys runs `lambdarec serve` with serve.auth.keys_file
// set from the environment: the probes stay open, the rest needs a key of
// the right scope; a broken keys file stops the command before it serves.
func TestServeCommandWithKeys(t *testing.T) {
	br := startBroker(t, 1, "events", "events.dlq")
	isolateIceberg(t)
	const admin, reader = "admin-key-for-the-serve-test", "read-key-for-the-serve-test"
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte(admin+" admin\n"+reader+" read\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LAMBDAREC_SERVE_AUTH_KEYS_FILE", keys)

	sc := startServe(t, 10*time.Second, " tls=false auth=true", "--http", "127.0.0.1:0", "--brokers", br.Addr())
	base, stderr := sc.base, sc.stderr
	get := func(path, key string) int {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path, key string
		want      int
	}{
		{"/healthz", "", 200}, {"/openapi.json", "", 200},
		{"/v1/status", "", 401}, {"/v1/status", reader, 403}, {"/v1/status", admin, 200},
		{"/metrics", "", 401}, {"/metrics", admin, 200},
		{"/v1/recommendations?user_id=u1", "", 401}, {"/v1/recommendations?user_id=u1", admin, 403}, {"/v1/recommendations?user_id=u1", reader, 200},
	} {
		if got := get(tc.path, tc.key); got != tc.want {
			t.Errorf("GET %s (key %q): %d, want %d", tc.path, tc.key, got, tc.want)
		}
	}
	sc.stop(t)
	for _, k := range []string{admin, reader} {
		if strings.Contains(stderr.String(), k) {
			t.Errorf("the logs show a key:\n%s", stderr.String())
		}
	}

	// A keys file that does not parse: the command fails, naming the line.
	if err := os.WriteFile(keys, []byte(admin+" superuser\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, broken serveTestBuffer
	code := run(context.Background(), []string{"serve", "--http", "127.0.0.1:0", "--brokers", br.Addr()}, &stdout, &broken)
	if code == 0 || !strings.Contains(broken.String(), `line 1: unknown scope \"superuser\"`) || strings.Contains(broken.String(), admin) {
		t.Errorf("broken keys file: exit %d, %s", code, broken.String())
	}
}

// dev is open by default and its banner says how to require keys.
func TestDevBannerAuth(t *testing.T) {
	var out strings.Builder
	cfg, err := devConfig(config.Default(), devOptions{dataDir: t.TempDir(), rate: 1, batchEvery: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	printDevBanner(&env{stdout: &out}, cfg, devOptions{dataDir: "d", rate: 1, batchEvery: time.Minute})
	if !strings.Contains(out.String(), "auth:     off") || !strings.Contains(out.String(), "LAMBDAREC_SERVE_AUTH_KEYS_FILE=FILE") {
		t.Errorf("banner without the auth hint:\n%s", out.String())
	}
	out.Reset()
	cfg.Serve.Auth.KeysFile = "/etc/keys"
	cfg.Serve.TLS.CertFile, cfg.Serve.TLS.KeyFile = "/c", "/k"
	printDevBanner(&env{stdout: &out}, cfg, devOptions{dataDir: "d", rate: 1, batchEvery: time.Minute})
	if !strings.Contains(out.String(), "API keys required (serve.auth.keys_file /etc/keys)") || !strings.Contains(out.String(), "https://127.0.0.1:8080") {
		t.Errorf("banner with keys and TLS:\n%s", out.String())
	}
}
