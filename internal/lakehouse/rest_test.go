package lakehouse

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lambdarec/lambdarec/internal/config"
)

// restEndpoint records what iceberg-go's REST client sends when lambdarec
// opens the catalog: the OAuth2 token request and GET /v1/config. It is not
// a catalog; it answers only those two calls.
type restEndpoint struct {
	srv *httptest.Server

	mu       sync.Mutex
	tokenReq map[string]string // form of the token request
	config   http.Header       // headers of GET /v1/config
	issued   string            // the token the endpoint hands out
	accept   string            // the bearer token /v1/config accepts
}

func newRESTEndpoint(t *testing.T) *restEndpoint {
	e := &restEndpoint{issued: "issued-access-token"}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/tokens", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		e.mu.Lock()
		e.tokenReq = map[string]string{}
		for k := range r.PostForm {
			e.tokenReq[k] = r.PostForm.Get(k)
		}
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": e.issued, "token_type": "Bearer", "expires_in": 3600, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})
	})
	mux.HandleFunc("GET /v1/config", func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.config = r.Header.Clone()
		accept := e.accept
		e.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+accept {
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": "not authorized", "type": "NotAuthorizedException", "code": 401}})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"defaults": {}, "overrides": {}}`))
	})
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

func restConfig(uri string, r config.IcebergREST) config.Iceberg {
	cfg := config.Default().Iceberg
	cfg.Catalog = "rest"
	cfg.CatalogURI = uri
	cfg.Warehouse = "s3://lake/lambdarec"
	cfg.REST = r
	return cfg
}

func TestRESTCatalogCredentials(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const token, clientID, secret = "static-bearer-token-123", "lambdarec-client", "client-secret-456"
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	// A token from a file, and extra properties: a header on every request.
	e := newRESTEndpoint(t)
	e.accept = token
	l, err := Open(t.Context(), restConfig(e.srv.URL, config.IcebergREST{
		TokenFile:  write("token", token+"\n"),
		Properties: config.StringMap{"header.X-Iceberg-Access-Delegation": "vended-credentials"},
	}), log)
	if err != nil {
		t.Fatalf("open with a token: %v", err)
	}
	l.Close()
	if got := e.config.Get("X-Iceberg-Access-Delegation"); got != "vended-credentials" {
		t.Errorf("extra header %q not sent", got)
	}

	// OAuth2 client credentials from the environment, a token endpoint and
	// a scope: exchanged for a token, which /v1/config then gets.
	e = newRESTEndpoint(t)
	e.accept = e.issued
	t.Setenv("ICEBERG_TEST_CREDENTIAL", clientID+":"+secret)
	l, err = Open(t.Context(), restConfig(e.srv.URL, config.IcebergREST{
		CredentialEnv:   "ICEBERG_TEST_CREDENTIAL",
		OAuth2ServerURI: e.srv.URL + "/oauth/tokens",
		Scope:           "PRINCIPAL_ROLE:lambdarec",
	}), log)
	if err != nil {
		t.Fatalf("open with client credentials: %v", err)
	}
	l.Close()
	if e.tokenReq["grant_type"] != "client_credentials" || e.tokenReq["client_id"] != clientID ||
		e.tokenReq["client_secret"] != secret || e.tokenReq["scope"] != "PRINCIPAL_ROLE:lambdarec" {
		t.Errorf("token request %v", e.tokenReq)
	}

	// A token the catalog refuses: an error naming the catalog, not the token.
	e = newRESTEndpoint(t)
	e.accept = "another-token"
	_, err = Open(t.Context(), restConfig(e.srv.URL, config.IcebergREST{TokenFile: write("token", token)}), log)
	if err == nil || !strings.Contains(err.Error(), "open rest catalog") {
		t.Errorf("refused token: %v", err)
	} else if strings.Contains(err.Error(), token) {
		t.Errorf("error shows the token: %v", err)
	}
	// Secrets that cannot be read.
	_, err = Open(t.Context(), restConfig(e.srv.URL, config.IcebergREST{TokenFile: filepath.Join(dir, "missing")}), log)
	if err == nil || !strings.Contains(err.Error(), "iceberg.rest token") {
		t.Errorf("missing token file: %v", err)
	}
	_, err = Open(t.Context(), restConfig(e.srv.URL, config.IcebergREST{CredentialEnv: "ICEBERG_TEST_UNSET"}), log)
	if err == nil || !strings.Contains(err.Error(), "ICEBERG_TEST_UNSET is not set") {
		t.Errorf("unset credential variable: %v", err)
	}

	for _, s := range []string{token, secret, e.issued} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("logs show a secret:\n%s", logs.String())
		}
	}
}
