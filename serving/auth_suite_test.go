package serving_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lambdarec/lambdarec/serving"
	"github.com/lambdarec/lambdarec/serving/auth"
)

// The bad-input suite passes unchanged with API keys on, for a key that
// holds every scope: authentication lets the endpoints give their own 400,
// 404 and 405 answers.
func TestBadInputWithAuth(t *testing.T) {
	const key = "suite-key-0123456789abcdef"
	file := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(file, []byte(key+" ingest,read,admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{KeysFile: file}, auth.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	serving.RunBadInputSuiteGuarded(t, a, http.Header{"Authorization": {"Bearer " + key}})

	// The same guard refuses a request without the key.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/v1/recommendations?user_id=u1", nil)
	req.Pattern = serving.RouteRecommendations
	if a.Authorize(rec, req) || rec.Code != http.StatusUnauthorized {
		t.Fatalf("guard without a key: %d", rec.Code)
	}
}

// The OpenAPI document declares the security of every operation as
// auth.DefaultPolicy enforces it: open operations have an empty security
// list; guarded ones accept either scheme, name their scope and document
// 401 and 403.
func TestOpenAPISecurityMatchesPolicy(t *testing.T) {
	var doc struct {
		Paths      map[string]map[string]map[string]any `json:"paths"`
		Components struct {
			SecuritySchemes map[string]map[string]any `json:"securitySchemes"`
			Responses       map[string]any            `json:"responses"`
		} `json:"components"`
	}
	if err := json.Unmarshal(serving.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	if s := doc.Components.SecuritySchemes["bearerAuth"]; s["type"] != "http" || s["scheme"] != "bearer" {
		t.Errorf("bearerAuth scheme %v", s)
	}
	if s := doc.Components.SecuritySchemes["apiKeyHeader"]; s["type"] != "apiKey" || s["in"] != "header" || s["name"] != "X-API-Key" {
		t.Errorf("apiKeyHeader scheme %v", s)
	}
	for _, r := range []string{"Unauthorized", "Forbidden"} {
		if doc.Components.Responses[r] == nil {
			t.Errorf("response %s is not defined", r)
		}
	}
	policy := auth.DefaultPolicy()
	n := 0
	for path, ops := range doc.Paths {
		for method, op := range ops {
			n++
			name := strings.ToUpper(method) + " " + path
			scope, ok := policy[name]
			if !ok {
				scope, ok = policy[path]
			}
			if !ok {
				t.Errorf("%s: not in auth.DefaultPolicy", name)
				continue
			}
			sec, has := op["security"].([]any)
			if !has {
				t.Errorf("%s: no security declared", name)
				continue
			}
			rs, _ := op["responses"].(map[string]any)
			if scope == 0 {
				if len(sec) != 0 || op["x-required-scope"] != nil {
					t.Errorf("%s is open but declares security %v", name, sec)
				}
				continue
			}
			got, _ := json.Marshal(sec)
			if string(got) != `[{"bearerAuth":[]},{"apiKeyHeader":[]}]` {
				t.Errorf("%s: security %s", name, got)
			}
			if op["x-required-scope"] != scope.String() {
				t.Errorf("%s: x-required-scope %v, the policy says %s", name, op["x-required-scope"], scope)
			}
			for _, st := range []string{"401", "403"} {
				if rs[st] == nil {
					t.Errorf("%s: %s is not documented", name, st)
				}
			}
		}
	}
	if n != len(policy) {
		t.Errorf("the document has %d operations, the policy %d routes", n, len(policy))
	}
}
