// Package buildinfo owns what the binary knows about its own build: the
// version and commit baked in at link time (-ldflags -X, set by the image
// build and `go tool task build`), shown by `lambdarec version` and carried by
// every role's lambdarec_build_info metric.
package buildinfo

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set with -ldflags "-X github.com/lambdarec/lambdarec/internal/buildinfo.version=v1.2.3
// -X github.com/lambdarec/lambdarec/internal/buildinfo.commit=<sha>".
var (
	version string
	commit  string
)

// Info is the build of the running binary.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

// Get returns the build of the running binary. What the linker did not set
// comes from the module's build information (a `go install …@version` has a
// module version; a build with VCS stamping has a revision), else "devel" and
// "unknown".
func Get() Info {
	in := Info{Version: version, Commit: commit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && in.Commit == "" {
				in.Commit = s.Value
			}
		}
	}
	if in.Version == "" {
		in.Version = "devel"
	}
	if in.Commit == "" {
		in.Commit = "unknown"
	}
	return in
}

// Collector returns lambdarec_build_info, a constant 1 labelled with the
// version, commit and Go version, for a role's registry.
func Collector() prometheus.Collector {
	in := Get()
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "lambdarec_build_info",
		Help:        "Build of the running binary: always 1, labelled with version, commit and Go version.",
		ConstLabels: prometheus.Labels{"version": in.Version, "commit": in.Commit, "goversion": in.GoVersion},
	}, func() float64 { return 1 })
}
