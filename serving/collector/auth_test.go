package collector

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/lambdarec/lambdarec/serving"
	"github.com/lambdarec/lambdarec/serving/auth"
)

// testGuard, when set, guards the servers of newTestEnv.
var testGuard serving.Guard

// keyTransport adds an API key to every request.
type keyTransport struct{ key string }

func (k keyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-API-Key", k.key)
	return http.DefaultTransport.RoundTrip(r)
}

// TestBadInputWithAuth runs the collector's suites unchanged with API keys
// on, every request (made with http.DefaultClient) carrying a key with the
// ingest and admin scopes: authentication lets the collector give its own
// answers. The tests of this package do not run in parallel, so the hooks
// are plain variables.
func TestBadInputWithAuth(t *testing.T) {
	const key = "collector-suite-key-0123456789"
	file := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(file, []byte(key+" ingest,admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{KeysFile: file}, auth.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	testGuard = a
	http.DefaultClient.Transport = keyTransport{key}
	t.Cleanup(func() { testGuard, http.DefaultClient.Transport = nil, nil })

	for name, f := range map[string]func(*testing.T){
		"Accept":                      TestAccept,
		"InvalidEventsProduceNothing": TestInvalidEventsProduceNothing,
		"TooLarge":                    TestTooLarge,
		"UnsupportedMediaType":        TestUnsupportedMediaType,
		"MethodNotAllowed":            TestMethodNotAllowed,
	} {
		t.Run(name, f)
	}

	// The same servers refuse a request without the key.
	http.DefaultClient.Transport = nil
	e := newTestEnv(t, nil)
	r := e.post(t, "application/json", jsonEvent(t, testEvent(0)))
	wantError(t, r, http.StatusUnauthorized, auth.CodeUnauthorized)
	if n := e.endOffsets(t); n != 0 {
		t.Fatalf("%d records produced without a key", n)
	}
}
