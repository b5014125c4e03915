package serving_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
