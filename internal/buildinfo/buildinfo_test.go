package buildinfo

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollectorCarriesBuild(t *testing.T) {
	version, commit = "v9.8.7", "0123abcd"
	t.Cleanup(func() { version, commit = "", "" })
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector())
	want := `# HELP lambdarec_build_info Build of the running binary: always 1, labelled with version, commit and Go version.
# TYPE lambdarec_build_info gauge
lambdarec_build_info{commit="0123abcd",goversion="` + Get().GoVersion + `",version="v9.8.7"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "lambdarec_build_info"); err != nil {
		t.Fatal(err)
	}
}

func TestGetDefaults(t *testing.T) {
	in := Get()
	if in.Version == "" || in.Commit == "" || !strings.HasPrefix(in.GoVersion, "go") || !strings.Contains(in.Platform, "/") {
		t.Fatalf("incomplete build info: %+v", in)
	}
}
