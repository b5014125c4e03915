package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"github.com/lambdarec/lambdarec/internal/buildinfo"
	"github.com/lambdarec/lambdarec/internal/config"
)

func init() {
	register("version", command{
		summary: "print the version and commit of this binary",
		setup: func(fs *flag.FlagSet, _ *config.Config) func(context.Context, *env) error {
			asJSON := fs.Bool("json", false, "print JSON")
			return func(_ context.Context, e *env) error {
				in := buildinfo.Get()
				if *asJSON {
					return json.NewEncoder(e.stdout).Encode(in)
				}
				_, err := fmt.Fprintf(e.stdout, "lambdarec %s\ncommit %s\n%s %s\n", in.Version, in.Commit, in.GoVersion, in.Platform)
				return err
			}
		},
		description: "Prints the version, commit, Go version and platform this binary was built with (--json for JSON).",
	})
}
