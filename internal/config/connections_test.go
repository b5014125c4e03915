package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConnectionsFile(t *testing.T) {
	cfg, err := Load("testdata/connections.good.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Serve.Auth != (ServeAuth{KeysFile: "/etc/lambdarec/api-keys", ReloadInterval: 10 * time.Second}) || !cfg.Serve.TLS.Enabled() {
		t.Errorf("serve = %+v", cfg.Serve)
	}
	if cfg.ClickHouse.Username != "lambdarec" || !cfg.ClickHouse.TLS.Enabled || cfg.ClickHouse.TLS.ServerName != "clickhouse-1.internal" {
		t.Errorf("clickhouse = %+v", cfg.ClickHouse)
	}
	r := cfg.Iceberg.REST
	if r.CredentialFile == "" || r.Scope != "PRINCIPAL_ROLE:ALL" || r.Properties["header.X-Iceberg-Access-Delegation"] != "vended-credentials" || len(r.Properties) != 2 {
		t.Errorf("iceberg.rest = %+v", r)
	}
	if d := Default(); d.Serve.Auth.KeysFile != "" || d.Serve.TLS.Enabled() || d.Serve.Auth.ReloadInterval != 5*time.Second {
		t.Errorf("default serve = %+v: auth and TLS must be off", d.Serve)
	}
}

func TestConnectionsFromEnv(t *testing.T) {
	cfg, err := Load("", []string{
		"LAMBDAREC_SERVE_AUTH_KEYS_FILE=/k",
		"LAMBDAREC_SERVE_TLS_CERT_FILE=/c", "LAMBDAREC_SERVE_TLS_KEY_FILE=/k2",
		"LAMBDAREC_CLICKHOUSE_PASSWORD_ENV=CH_PASSWORD",
		"LAMBDAREC_CLICKHOUSE_TLS_ENABLED=true",
		"LAMBDAREC_ICEBERG_REST_TOKEN_FILE=/t",
		"LAMBDAREC_ICEBERG_REST_PROPERTIES=prefix=p, header.X-A = b",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Serve.Auth.KeysFile != "/k" || cfg.Serve.TLS.KeyFile != "/k2" || cfg.ClickHouse.PasswordEnv != "CH_PASSWORD" ||
		!cfg.ClickHouse.TLS.Enabled || cfg.Iceberg.REST.TokenFile != "/t" ||
		len(cfg.Iceberg.REST.Properties) != 2 || cfg.Iceberg.REST.Properties["header.X-A"] != "b" {
		t.Errorf("env not applied: %+v %+v %+v", cfg.Serve, cfg.ClickHouse, cfg.Iceberg.REST)
	}
	if _, err := Load("", []string{"LAMBDAREC_ICEBERG_REST_PROPERTIES=novalue"}); err == nil {
		t.Error("a property without = accepted")
	}
	_, err = Load("", []string{"LAMBDAREC_CLICKHOUSE_PASSWORD_ENV=LAMBDAREC_CLICKHOUSE_PASSWORD"})
	if err == nil || !strings.Contains(err.Error(), "names a configuration key") {
		t.Errorf("a LAMBDAREC_ password variable: %v", err)
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "s")
	if err := os.WriteFile(f, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := ReadSecret(f, ""); s != "s3cret" || err != nil {
		t.Errorf("file: %q %v", s, err)
	}
	t.Setenv("LR_TEST_SECRET_VAR", "v")
	if s, err := ReadSecret("", "LR_TEST_SECRET_VAR"); s != "v" || err != nil {
		t.Errorf("env: %q %v", s, err)
	}
	if s, err := ReadSecret("", ""); s != "" || err != nil {
		t.Errorf("none: %q %v", s, err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range [][2]string{{empty, ""}, {filepath.Join(dir, "missing"), ""}, {"", "SECRET_THAT_IS_NOT_SET_ANYWHERE"}} {
		if _, err := ReadSecret(tc[0], tc[1]); err == nil {
			t.Errorf("ReadSecret(%q, %q): no error", tc[0], tc[1])
		}
	}
}
