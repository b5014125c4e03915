package lakehouse

import (
	"fmt"

	"github.com/apache/iceberg-go"

	"github.com/lambdarec/lambdarec/internal/config"
)

// restProps are the properties of the Iceberg REST catalog that come from
// iceberg.rest: the token or OAuth2 client credential (read from their
// files or variables), the token endpoint, the scope, and the extra
// properties as given. They carry secrets: never log them.
func restProps(cfg config.IcebergREST) (iceberg.Properties, error) {
	props := iceberg.Properties{}
	for k, v := range cfg.Properties {
		props[k] = v
	}
	token, err := config.ReadSecret(cfg.TokenFile, cfg.TokenEnv)
	if err != nil {
		return nil, fmt.Errorf("iceberg.rest token: %w", err)
	}
	if token != "" {
		props["token"] = token
	}
	cred, err := config.ReadSecret(cfg.CredentialFile, cfg.CredentialEnv)
	if err != nil {
		return nil, fmt.Errorf("iceberg.rest credential: %w", err)
	}
	if cred != "" {
		props["credential"] = cred
	}
	if cfg.OAuth2ServerURI != "" {
		props["oauth2-server-uri"] = cfg.OAuth2ServerURI
	}
	if cfg.Scope != "" {
		props["scope"] = cfg.Scope
	}
	return props, nil
}
