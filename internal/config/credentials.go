package config

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// ClickHouseTLS secures the native-protocol connection to ClickHouse.
type ClickHouseTLS struct {
	// Enabled turns TLS on (the server's secure port, 9440 by default).
	// Default: false.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs trusted for the server's
	// certificate. Default: the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate, for servers that
	// require one. Default: none.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is checked against the server's certificate. Default: the
	// DSN's host.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any server certificate. Default: false;
	// for tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// IcebergREST are the credentials and extra properties of the Iceberg REST
// catalog (iceberg.catalog: rest). Secrets are read from files or
// environment variables, never written in the configuration.
type IcebergREST struct {
	// TokenFile / TokenEnv hold a bearer token sent as is. Default: none.
	TokenFile string `yaml:"token_file"`
	TokenEnv  string `yaml:"token_env"`
	// CredentialFile / CredentialEnv hold OAuth2 client credentials
	// "client_id:client_secret", exchanged for a token at OAuth2ServerURI.
	// Default: none.
	CredentialFile string `yaml:"credential_file"`
	CredentialEnv  string `yaml:"credential_env"`
	// OAuth2ServerURI is the token endpoint. Default: the catalog's
	// v1/oauth/tokens.
	OAuth2ServerURI string `yaml:"oauth2_server_uri"`
	// Scope is the OAuth2 scope requested. Default: catalog.
	Scope string `yaml:"scope"`
	// Properties are passed to the catalog as they are (for example
	// "header.X-Iceberg-Access-Delegation: vended-credentials" or
	// "prefix"). In the environment: k=v,k=v.
	Properties StringMap `yaml:"properties"`
}

// StringMap is a map of strings, written k=v,k=v in the environment.
type StringMap map[string]string

// UnmarshalText parses k=v pairs separated by commas.
func (m *StringMap) UnmarshalText(b []byte) error {
	out := StringMap{}
	for kv := range strings.SplitSeq(string(b), ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return fmt.Errorf("%q is not key=value", kv)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	*m = out
	return nil
}

// restReserved are the catalog properties lambdarec sets itself, or that
// carry secrets and so have their own *_file / *_env keys.
var restReserved = []string{"uri", "type", "warehouse", "token", "credential", "oauth2-server-uri", "scope"}

// validateConnections checks the credentials of ClickHouse and of the
// Iceberg REST catalog.
func validateConnections(c *Config) []error {
	var errs []error
	ch := c.ClickHouse
	errs = append(errs, validateSecretRef("clickhouse.password", ch.PasswordFile, ch.PasswordEnv)...)
	if (ch.TLS.CertFile == "") != (ch.TLS.KeyFile == "") {
		errs = append(errs, errors.New("clickhouse.tls: cert_file and key_file must be set together"))
	}
	if !ch.TLS.Enabled && (ch.TLS.CAFile != "" || ch.TLS.CertFile != "" || ch.TLS.ServerName != "" || ch.TLS.InsecureSkipVerify) {
		errs = append(errs, errors.New("clickhouse.tls: settings given but clickhouse.tls.enabled is false"))
	}
	r := c.Iceberg.REST
	errs = append(errs, validateSecretRef("iceberg.rest.token", r.TokenFile, r.TokenEnv)...)
	errs = append(errs, validateSecretRef("iceberg.rest.credential", r.CredentialFile, r.CredentialEnv)...)
	if (r.TokenFile != "" || r.TokenEnv != "") && (r.CredentialFile != "" || r.CredentialEnv != "") {
		errs = append(errs, errors.New("iceberg.rest: set a token or a credential, not both"))
	}
	if r.OAuth2ServerURI != "" {
		if u, err := url.Parse(r.OAuth2ServerURI); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("iceberg.rest.oauth2_server_uri: %q is not an http(s) URL", r.OAuth2ServerURI))
		}
	}
	keys := make([]string, 0, len(r.Properties))
	for k := range r.Properties {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, res := range restReserved {
			if k == res {
				errs = append(errs, fmt.Errorf("iceberg.rest.properties: %q is set by its own key (or by lambdarec), not here", k))
			}
		}
	}
	return errs
}
