package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/serving"
)

// CompareConfig configures Compare. Zero values take the defaults.
type CompareConfig struct {
	// Fixture is the content seeded into the store.
	Fixture Fixture
	// Load is the load of each measurement; its Targets are set by Compare.
	Load Config
	// K of every request. Default: 20.
	K int
	// Targets is the number of distinct request URLs. Default: 2000.
	Targets int
	// SessionShare is the share of requests that name a session (see
	// RecommendationTargets). Negative: DefaultSessionShare.
	SessionShare float64
	// Rounds of measurements: each measures the bare handler, then the
	// API. Default: 3.
	Rounds int
	// RunLoad runs one measurement. Compare is meant to be given a
	// function that runs the load generator in a second process
	// (ExecRunner); Run itself works too, in process.
	RunLoad func(ctx context.Context, cfg Config) (Result, error)
	// Log receives progress. Default: discard.
	Log *slog.Logger
}

// Comparison is the outcome of Compare.
type Comparison struct {
	// Bare and API are the measurements of each round.
	Bare []Result `json:"bare"`
	API  []Result `json:"api"`
	// BareMedian and APIMedian are the rounds with the median throughput.
	BareMedian Result `json:"bare_median"`
	APIMedian  Result `json:"api_median"`
	// Ratio is APIMedian.RPS / BareMedian.RPS: the figure of merit.
	Ratio float64 `json:"ratio"`
	// Sample is one answer of the API, for the record.
	Sample string `json:"sample"`
}

// Compare seeds st with cfg.Fixture, serves the read API over it on a
// loopback port beside a bare net/http handler that returns a fixed body (a
// real answer of the API, so both send the same bytes) on another, and
// measures both alternately with cfg.RunLoad.
func Compare(ctx context.Context, st store.Store, cfg CompareConfig) (*Comparison, error) {
	if cfg.RunLoad == nil {
		return nil, errors.New("loadgen: compare needs a load runner")
	}
	if cfg.K == 0 {
		cfg.K = 20
	}
	if cfg.Targets == 0 {
		cfg.Targets = 2000
	}
	if cfg.Rounds == 0 {
		cfg.Rounds = 3
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	if err := Seed(ctx, st, cfg.Fixture, fmt.Sprintf("bench-%d", start.UnixNano())); err != nil {
		return nil, err
	}
	log.Info("store seeded", "took", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	apiAddr, apiDone, err := serveAPI(ctx, st)
	if err != nil {
		return nil, err
	}
	defer func() { cancel(); <-apiDone }()
	apiTargets := RecommendationTargets("http://"+apiAddr, cfg.Fixture, cfg.Targets, cfg.K, cfg.SessionShare)

	sample, err := fetch(ctx, apiTargets[0])
	if err != nil {
		return nil, err
	}
	// Warm the store's caches (the ClickHouse backend's batch-view cache).
	for _, t := range apiTargets {
		if _, err := fetch(ctx, t); err != nil {
			return nil, err
		}
	}
	bareAddr, bareDone, err := serveBare(ctx, sample)
	if err != nil {
		return nil, err
	}
	defer func() { cancel(); <-bareDone }()
	bareTargets := make([]string, len(apiTargets))
	for i, t := range apiTargets {
		bareTargets[i] = strings.Replace(t, apiAddr, bareAddr, 1)
	}

	c := &Comparison{Sample: string(sample)}
	for round := range cfg.Rounds {
		for _, m := range []struct {
			name    string
			targets []string
			out     *[]Result
		}{{"bare", bareTargets, &c.Bare}, {"api", apiTargets, &c.API}} {
			lc := cfg.Load
			lc.Targets = m.targets
			res, err := cfg.RunLoad(ctx, lc)
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round+1, m.name, err)
			}
			log.Info("measured", "round", round+1, "target", m.name, "rps", int(res.RPS), "p50_ms", res.P50, "p99_ms", res.P99, "non_2xx", res.Non2xx, "errors", res.Errors)
			*m.out = append(*m.out, res)
		}
	}
	c.BareMedian, c.APIMedian = median(c.Bare), median(c.API)
	c.Ratio = c.APIMedian.RPS / c.BareMedian.RPS
	return c, nil
}

func median(rs []Result) Result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b Result) int {
		switch {
		case a.RPS < b.RPS:
			return -1
		case a.RPS > b.RPS:
			return 1
		}
		return 0
	})
	return s[len(s)/2]
}

// Report writes c as a small table.
func (c *Comparison) Report(w io.Writer) {
	fmt.Fprintf(w, "%-28s %10s %9s %9s %9s %9s %8s %8s\n", "target (median of rounds)", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "non-2xx", "errors")
	row := func(name string, r Result) {
		fmt.Fprintf(w, "%-28s %10.0f %9.3f %9.3f %9.3f %9.3f %8d %8d\n", name, r.RPS, r.P50, r.P90, r.P99, r.Max, r.Non2xx, r.Errors)
	}
	row("bare net/http, fixed body", c.BareMedian)
	row("GET /v1/recommendations", c.APIMedian)
	fmt.Fprintf(w, "ratio api/bare req/s: %.3f  (rounds: bare %s; api %s)\n", c.Ratio, rpsList(c.Bare), rpsList(c.API))
	fmt.Fprintf(w, "connections %d, %.0fs per measurement, body %.0f bytes\n", c.APIMedian.Connections, c.APIMedian.Seconds, c.APIMedian.BodyBytes)
}

func rpsList(rs []Result) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.0f", r.RPS)
	}
	return strings.Join(parts, " ")
}

func serveAPI(ctx context.Context, st store.Store) (string, <-chan struct{}, error) {
	scfg := config.Default().Serve
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen for the api: %w", err)
	}
	scfg.Addr = ln.Addr().String()
	srv, err := serving.NewServer(scfg, serving.Deps{})
	if err != nil {
		return "", nil, errors.Join(err, ln.Close())
	}
	api, err := serving.NewAPI(serving.APIConfig{}, serving.APIDeps{Store: st})
	if err != nil {
		return "", nil, errors.Join(err, ln.Close())
	}
	if err := api.Mount(srv); err != nil {
		return "", nil, errors.Join(err, ln.Close())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ctx, ln)
	}()
	return scfg.Addr, done, nil
}

// serveBare serves body on every path with a bare net/http handler.
func serveBare(ctx context.Context, body []byte) (string, <-chan struct{}, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("listen for the bare handler: %w", err)
	}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = hs.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = hs.Close()
	}()
	return ln.Addr().String(), done, nil
}

func fetch(ctx context.Context, target string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get %s: status %d: %s", target, resp.StatusCode, b)
	}
	return b, nil
}

// ExecRunner returns a RunLoad that runs the load generator in a second
// process: name with args, followed by the flags of "lambdarec bench load"
// (--targets FILE --connections N --duration D --warmup W --timeout T
// --json), whose standard output must be one Result as JSON. The targets
// are passed in a temporary file.
func ExecRunner(name string, args ...string) func(ctx context.Context, cfg Config) (Result, error) {
	return func(ctx context.Context, cfg Config) (Result, error) {
		if _, _, err := cfg.validate(); err != nil {
			return Result{}, err
		}
		f, err := os.CreateTemp("", "lambdarec-loadgen-targets-*.txt")
		if err != nil {
			return Result{}, fmt.Errorf("write targets: %w", err)
		}
		defer os.Remove(f.Name())
		_, err = io.WriteString(f, strings.Join(cfg.Targets, "\n")+"\n")
		if err = errors.Join(err, f.Close()); err != nil {
			return Result{}, fmt.Errorf("write targets: %w", err)
		}
		argv := append(slices.Clone(args),
			"--targets", f.Name(),
			"--connections", fmt.Sprint(cfg.Connections),
			"--duration", cfg.Duration.String(),
			"--warmup", cfg.Warmup.String(),
			"--timeout", cfg.Timeout.String(),
			"--json")
		cmd := exec.CommandContext(ctx, name, argv...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return Result{}, fmt.Errorf("load generator %s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
		}
		var res Result
		if err := json.Unmarshal(out, &res); err != nil {
			return Result{}, fmt.Errorf("load generator %s: output %q: %w", name, out, err)
		}
		return res, nil
	}
}
