package backend_test

import (
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/store/backend"
)

// clickhouseServer is the server .ci/clickhouse.sh started: its DSN, and the
// directory holding the password of its user lambdarec_auth and its
// self-signed TLS certificate (CLICKHOUSE_DIR, as for the script).
func clickhouseServer(t *testing.T) (dsn *url.URL, dir string) {
	t.Helper()
	s := os.Getenv("LAMBDAREC_CLICKHOUSE_DSN")
	if s == "" {
		t.Skip("LAMBDAREC_CLICKHOUSE_DSN is not set; run .ci/clickhouse.sh")
	}
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	dir = os.Getenv("CLICKHOUSE_DIR")
	if dir == "" {
		dir = "/tmp/lambdarec-clickhouse"
	}
	for _, f := range []string{"auth.password", "tls/server.crt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("%v: the server was not started by the current .ci/clickhouse.sh (stop it and run the script again)", err)
		}
	}
	return u, dir
}

func openWith(t *testing.T, dsn string, env []string, mutate func(*config.ClickHouse)) error {
	t.Helper()
	cfg, err := config.Load("", append([]string{"LAMBDAREC_STORE_BACKEND=clickhouse", "LAMBDAREC_CLICKHOUSE_DSN=" + dsn}, env...))
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(&cfg.ClickHouse)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := backend.Open(t.Context(), cfg, nil)
	if err == nil {
		_, _, err = s.CurrentBatch(t.Context())
		s.Close()
	}
	return err
}

// A user with a password, from a file and from the environment; a wrong
// or missing password is a clear error that does not show the password.
func TestOpenClickHouseCredentials(t *testing.T) {
	u, dir := clickhouseServer(t)
	dsn := u.String()
	pwFile := filepath.Join(dir, "auth.password")
	b, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	password := strings.TrimSpace(string(b))

	if err := openWith(t, dsn, []string{"LAMBDAREC_CLICKHOUSE_USERNAME=lambdarec_auth", "LAMBDAREC_CLICKHOUSE_PASSWORD_FILE=" + pwFile}, nil); err != nil {
		t.Errorf("password file: %v", err)
	}
	t.Setenv("CH_TEST_PASSWORD", password)
	if err := openWith(t, dsn, []string{"LAMBDAREC_CLICKHOUSE_USERNAME=lambdarec_auth", "LAMBDAREC_CLICKHOUSE_PASSWORD_ENV=CH_TEST_PASSWORD"}, nil); err != nil {
		t.Errorf("password from the environment: %v", err)
	}

	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("not-"+password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, env := range map[string][]string{
		"wrong password": {"LAMBDAREC_CLICKHOUSE_USERNAME=lambdarec_auth", "LAMBDAREC_CLICKHOUSE_PASSWORD_FILE=" + wrong},
		"no password":    {"LAMBDAREC_CLICKHOUSE_USERNAME=lambdarec_auth"},
	} {
		err := openWith(t, dsn, env, nil)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), "password") {
			t.Errorf("%s: %v, want an error about the password", name, err)
		} else if strings.Contains(err.Error(), password) {
			t.Errorf("%s: the error shows the password: %v", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	err = openWith(t, dsn, []string{"LAMBDAREC_CLICKHOUSE_PASSWORD_ENV=CH_TEST_UNSET_VARIABLE"}, nil)
	if err == nil || !strings.Contains(err.Error(), "CH_TEST_UNSET_VARIABLE is not set") {
		t.Errorf("unset variable: %v", err)
	}
	err = openWith(t, dsn, []string{"LAMBDAREC_CLICKHOUSE_PASSWORD_FILE=" + filepath.Join(dir, "missing")}, nil)
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing password file: %v", err)
	}
}

// The secure native port with the server's self-signed certificate as the
// CA; an unknown CA and a plaintext client on the TLS port fail clearly.
func TestOpenClickHouseTLS(t *testing.T) {
	u, dir := clickhouseServer(t)
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	tlsURL := *u
	tlsURL.Host = net.JoinHostPort(host, strconv.Itoa(p+440))
	dsn := tlsURL.String()
	ca := filepath.Join(dir, "tls", "server.crt")
	creds := []string{"LAMBDAREC_CLICKHOUSE_USERNAME=lambdarec_auth", "LAMBDAREC_CLICKHOUSE_PASSWORD_FILE=" + filepath.Join(dir, "auth.password")}

	if err := openWith(t, dsn, creds, func(c *config.ClickHouse) { c.TLS = config.ClickHouseTLS{Enabled: true, CAFile: ca} }); err != nil {
		t.Errorf("tls with the server's CA: %v", err)
	}
	err = openWith(t, dsn, creds, func(c *config.ClickHouse) { c.TLS = config.ClickHouseTLS{Enabled: true} })
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("unknown CA: %v, want a certificate error", err)
	}
	err = openWith(t, dsn, creds, func(c *config.ClickHouse) {
		c.TLS = config.ClickHouseTLS{Enabled: true, CAFile: ca, ServerName: "clickhouse.example"}
	})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("wrong server name: %v, want a certificate error", err)
	}
	if err := openWith(t, dsn, creds, nil); err == nil {
		t.Error("plaintext client on the TLS port connected")
	} else {
		t.Logf("plaintext client on the TLS port: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bad, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = openWith(t, dsn, creds, func(c *config.ClickHouse) { c.TLS = config.ClickHouseTLS{Enabled: true, CAFile: bad} })
	if err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("bad CA file: %v", err)
	}
}
