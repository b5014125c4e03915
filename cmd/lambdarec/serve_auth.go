package main

import (
	"log/slog"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/serving"
	"github.com/lambdarec/lambdarec/serving/auth"
)

// secureServer puts srv behind the API keys of serve.auth and serves it over
// the HTTPS of serve.tls, when they are configured. It returns the keys'
// authenticator (nil without keys) for the RPC API to check the same keys.
func secureServer(cfg config.Serve, log *slog.Logger, srv *serving.Server) (*auth.Authenticator, error) {
	var a *auth.Authenticator
	if cfg.Auth.KeysFile != "" {
		var err error
		a, err = auth.New(auth.Config{KeysFile: cfg.Auth.KeysFile, ReloadInterval: cfg.Auth.ReloadInterval},
			auth.Deps{Log: log.With("component", "auth"), Registerer: srv.Registry()})
		if err != nil {
			return nil, err
		}
		srv.SetGuard(a)
	}
	if cfg.TLS.Enabled() {
		certs, err := auth.NewCertReloader(cfg.TLS.CertFile, cfg.TLS.KeyFile, log.With("component", "tls"), srv.Registry())
		if err != nil {
			return nil, err
		}
		srv.SetTLS(certs.TLSConfig())
	}
	return a, nil
}

// authHint is the dev banner's line about API keys.
func authHint(cfg config.Serve) string {
	if cfg.Auth.KeysFile != "" {
		return "API keys required (serve.auth.keys_file " + cfg.Auth.KeysFile + ")"
	}
	return "off: every endpoint is open. To require API keys, write lines \"KEY SCOPE[,SCOPE…]\" (scopes ingest, read, admin)\n            to a file and start with LAMBDAREC_SERVE_AUTH_KEYS_FILE=FILE (serve.auth.keys_file)"
}
