package config

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// ServeAuth turns on API keys for the HTTP API (serving/auth).
type ServeAuth struct {
	// KeysFile holds one "KEY SCOPE[,SCOPE…]" per line (scopes ingest, read,
	// admin; # starts a comment). Empty (the default): the API is open.
	KeysFile string `yaml:"keys_file"`
	// ReloadInterval is how often the keys file is checked for changes.
	// Default: 5s.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// ServeTLS serves the HTTP API over HTTPS when both files are set. The
// certificate (a PEM chain) and its key are re-read when they change.
type ServeTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether HTTPS is configured.
func (t ServeTLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" }

// defaultServeAuth is the default of serve.auth: no keys file, so the API is
// open.
func defaultServeAuth() ServeAuth { return ServeAuth{ReloadInterval: 5 * time.Second} }

// validateServeSecurity checks serve.auth and serve.tls.
func validateServeSecurity(s Serve) []error {
	var errs []error
	if s.Auth.ReloadInterval <= 0 {
		errs = append(errs, fmt.Errorf("serve.auth.reload_interval: must be positive"))
	}
	if (s.TLS.CertFile == "") != (s.TLS.KeyFile == "") {
		errs = append(errs, fmt.Errorf("serve.tls: cert_file and key_file must be set together"))
	}
	return errs
}

// ReadSecret returns a secret from file (its content, surrounding whitespace
// trimmed) or else from the environment variable env. Neither set: "". The
// errors name the file or the variable, never the value.
func ReadSecret(file, env string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read secret file: %w", err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("secret file %s is empty", file)
		}
		return s, nil
	}
	if env != "" {
		s, ok := os.LookupEnv(env)
		if !ok || s == "" {
			return "", fmt.Errorf("environment variable %s is not set", env)
		}
		return s, nil
	}
	return "", nil
}

// validateSecretRef checks a pair of *_file / *_env keys: at most one, and
// the variable must not be a LAMBDAREC_ name (those are configuration keys).
func validateSecretRef(key, file, env string) []error {
	var errs []error
	if file != "" && env != "" {
		errs = append(errs, fmt.Errorf("%s_file, %s_env: set one, not both", key, key))
	}
	if strings.HasPrefix(env, EnvPrefix) {
		errs = append(errs, fmt.Errorf("%s_env: %s names a configuration key; use another variable name", key, env))
	}
	return errs
}
