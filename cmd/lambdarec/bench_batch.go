package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/lambdarec/lambdarec/batch/batchbench"
	"github.com/lambdarec/lambdarec/internal/config"
)

func init() {
	register("bench batch", command{
		summary: "benchmark batch run against a plain Iceberg scan of the same snapshot",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			var bc batchbench.Config
			var jsonOut bool
			var cpuProfile string
			fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the first batch run to this file")
			fs.IntVar(&bc.Events, "events", 1_000_000, "events archived before measuring")
			fs.IntVar(&bc.Rounds, "rounds", 3, "measurements of each of scan and batch")
			fs.StringVar(&bc.Dir, "dir", "", "scratch directory for the warehouse (default: a new temporary directory, removed after)")
			fs.BoolVar(&jsonOut, "json", false, "print the result as JSON")
			return func(ctx context.Context, e *env) error {
				if bc.Dir == "" {
					dir, err := os.MkdirTemp("", "lambdarec-bench-batch-")
					if err != nil {
						return err
					}
					defer os.RemoveAll(dir)
					bc.Dir = dir
				}
				bc.Log = e.log.With("component", "bench")
				if cpuProfile != "" {
					f, err := os.Create(cpuProfile)
					if err != nil {
						return err
					}
					defer f.Close()
					bc.CPUProfile = f
				}
				res, err := batchbench.Run(ctx, bc)
				if err != nil {
					return err
				}
				if jsonOut {
					return json.NewEncoder(e.stdout).Encode(res)
				}
				s, b := res.MedianScan(), res.MedianBatch()
				fmt.Fprintf(e.stdout, "events: %d (archived in %s)\n", res.Events, res.Archive.Round(1e6))
				fmt.Fprintf(e.stdout, "plain scan: median %s, peak heap %d MiB\n", s.Wall.Round(1e6), s.PeakHeap>>20)
				fmt.Fprintf(e.stdout, "batch run:  median %s, peak heap %d MiB\n", b.Wall.Round(1e6), b.PeakHeap>>20)
				fmt.Fprintf(e.stdout, "batch/scan: %.2f (median of %d rounds each)\n", res.Ratio(), len(res.Scans))
				return nil
			}
		},
		description: "Times batch run against a plain Iceberg scan of the same snapshot and prints both with their ratio.",
	})
}
