package serving

import (
	"net/http"
	"testing"

	"github.com/lambdarec/lambdarec/internal/store"
)

// testGuard, when set, guards the servers of newFixture, and
// testRequestHeader is added to every request of do: the API suites then run
// with authentication on (see auth_suite_test.go).
var (
	testGuard         Guard
	testRequestHeader http.Header
)

// RunBadInputSuiteGuarded runs the API's bad-input suite over the in-process
// store on servers guarded by g, every request carrying header. Tests of
// this package do not run in parallel, so the hooks are plain variables.
func RunBadInputSuiteGuarded(t *testing.T, g Guard, header http.Header) {
	testGuard, testRequestHeader = g, header
	t.Cleanup(func() { testGuard, testRequestHeader = nil, nil })
	testBadInput(t, func(testing.TB) store.Store { return store.NewMemory() })
}
