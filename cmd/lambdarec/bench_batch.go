package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/lambdarec/lambdarec/batch/batchbench"
	"github.com/lambdarec/lambdarec/internal/config"
)

func init() {
	register("bench batch", command{
		summary: "benchmark batch run against a plain Iceberg scan of the same snapshot",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			var bc batchbench.Config
			var jsonOut bool
			var cpuProfile, traceFile, incProfile, incHeapProfile string
			fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the first batch run to this file")
			fs.StringVar(&traceFile, "trace", "", "write an execution trace (go tool trace) of the first batch run to this file")
			fs.StringVar(&incProfile, "cpuprofile-incremental", "", "write a CPU profile of the incremental run to this file")
			fs.StringVar(&incHeapProfile, "memprofile-incremental", "", "write a heap profile of the incremental run at its largest live heap to this file")
			fs.IntVar(&bc.Events, "events", 1_000_000, "events archived before measuring")
			fs.IntVar(&bc.Rounds, "rounds", 3, "measurements of each of scan and full batch run")
			fs.Int64Var(&bc.MaxMemory, "max-memory", cfg.Batch.MaxMemory, "batch.max_memory of the runs (bytes), also their Go memory limit")
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
				if traceFile != "" {
					f, err := os.Create(traceFile)
					if err != nil {
						return err
					}
					defer f.Close()
					bc.Trace = f
				}
				if incProfile != "" {
					f, err := os.Create(incProfile)
					if err != nil {
						return err
					}
					defer f.Close()
					bc.IncrementalCPUProfile = f
				}
				if incHeapProfile != "" {
					f, err := os.Create(incHeapProfile)
					if err != nil {
						return err
					}
					defer f.Close()
					bc.IncrementalHeapProfile = f
				}
				loadBefore := loadAverage()
				res, err := batchbench.Run(ctx, bc)
				if err != nil {
					return err
				}
				if jsonOut {
					return json.NewEncoder(e.stdout).Encode(res)
				}
				s, b, in := res.MedianScan(), res.MedianBatch(), res.Incremental
				fmt.Fprintf(e.stdout, "events: %d (archived in %s), batch.max_memory %d MiB\n", res.Events, res.Archive.Round(1e6), res.MaxMemory>>20)
				fmt.Fprintf(e.stdout, "plain scan:      median %s (cpu %s), peak heap %d MiB\n", s.Wall.Round(1e6), s.CPU.Round(1e6), s.PeakHeap>>20)
				fmt.Fprintf(e.stdout, "full batch run:  median %s (cpu %s), peak heap %d MiB\n", b.Wall.Round(1e6), b.CPU.Round(1e6), b.PeakHeap>>20)
				fmt.Fprintf(e.stdout, "full/scan:       %.2f wall, %.2f cpu (median of %d rounds each)\n", res.Ratio(), res.CPURatio(), len(res.Scans))
				fmt.Fprintf(e.stdout, "then %d more events (%d in all):\n", res.NewEvents, res.Events+res.NewEvents)
				fmt.Fprintf(e.stdout, "plain scan:      %s (cpu %s), peak heap %d MiB\n", res.ScanAfter.Wall.Round(1e6), res.ScanAfter.CPU.Round(1e6), res.ScanAfter.PeakHeap>>20)
				fmt.Fprintf(e.stdout, "incremental run: %s (cpu %s), peak heap %d MiB, %d rows read (%d new)\n", in.Wall.Round(1e6), in.CPU.Round(1e6), in.PeakHeap>>20, res.IncrementalRead, in.Rows)
				fmt.Fprintf(e.stdout, "incremental/scan: %.2f, incremental/full: %.2f\n", res.IncrementalRatio(), in.Wall.Seconds()/b.Wall.Seconds())
				fmt.Fprintf(e.stdout, "full run phases: %s\n", batchbench.FormatSteps(b.Steps))
				fmt.Fprintf(e.stdout, "incremental run phases: %s\n", batchbench.FormatSteps(in.Steps))
				fmt.Fprintf(e.stdout, "cpu (user+sys):  scan %s, full run %s, incremental run %s (incremental/full %.2f)\n",
					s.CPU.Round(1e6), b.CPU.Round(1e6), in.CPU.Round(1e6), in.CPU.Seconds()/b.CPU.Seconds())
				fmt.Fprintf(e.stdout, "load average: %s before, %s after\n", loadBefore, loadAverage())
				return nil
			}
		},
		description: "Times batch run against a plain Iceberg scan of the same snapshot and prints both with their ratio.",
	})
}

// loadAverage returns the 1, 5 and 15 minute load averages ("?" where
// /proc/loadavg is not readable).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
