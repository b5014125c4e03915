package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// LoadCommand registers the flags of the load generator's command line
// ("lambdarec bench load") on fs and returns the function that runs it,
// printing the Result to stdout (as JSON with --json). ExecRunner starts a
// process running it.
func LoadCommand(fs *flag.FlagSet) func(ctx context.Context, stdout io.Writer) error {
	var (
		cfg         Config
		urls        []string
		targetsFile string
		jsonOut     bool
	)
	fs.Func("url", "a URL to request (repeatable)", func(s string) error { urls = append(urls, s); return nil })
	fs.StringVar(&targetsFile, "targets", "", "file of URLs to request, one a line")
	fs.IntVar(&cfg.Connections, "connections", 16, "concurrent keep-alive connections")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured time")
	fs.DurationVar(&cfg.Warmup, "warmup", 2*time.Second, "unmeasured warmup")
	fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Second, "timeout of one request")
	fs.BoolVar(&jsonOut, "json", false, "print the result as JSON")
	return func(ctx context.Context, stdout io.Writer) error {
		cfg.Targets = append(cfg.Targets, urls...)
		if targetsFile != "" {
			t, err := readLines(targetsFile)
			if err != nil {
				return err
			}
			cfg.Targets = append(cfg.Targets, t...)
		}
		if len(cfg.Targets) == 0 {
			return errors.New("loadgen: no targets: give --url or --targets")
		}
		res, err := Run(ctx, cfg)
		if err != nil {
			return err
		}
		if jsonOut {
			return json.NewEncoder(stdout).Encode(res)
		}
		_, err = fmt.Fprintf(stdout, "%d requests in %.1fs: %.0f req/s; latency p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms; non-2xx %d, errors %d\n",
			res.Requests, res.Seconds, res.RPS, res.P50, res.P90, res.P99, res.P999, res.Max, res.Non2xx, res.Errors)
		return err
	}
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read targets: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read targets %s: %w", path, err)
	}
	return out, nil
}
