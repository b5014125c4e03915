package loadgen

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
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
	// SessionWrites is how many session views per second are rewritten
	// through the store while both handlers are measured (a newer version
	// of a random fixture session, as the speed layer writes them), so that
	// caches of the session view see invalidations. Default: 0, none.
	SessionWrites float64
	// Rounds of measurements: each measures the bare handler, then the
	// API. Default: 3.
	Rounds int
	// RunLoad runs one measurement. Compare is meant to be given a
	// function that runs the load generator in a second process
	// (ExecRunner); Run itself works too, in process.
	RunLoad func(ctx context.Context, cfg Config) (Result, error)
	// Log receives progress. Default: discard.
	Log *slog.Logger
	// ExternalCPU, when set, returns the CPU time a server the API depends
	// on has used so far (Redis's used_cpu_user + used_cpu_sys), so that
	// its share of each request is counted beside this process's.
	ExternalCPU func(ctx context.Context) (time.Duration, error)
	// OnAPI, when set, runs around each measurement of the API: start is
	// called before it and its result after (a CPU profile).
	OnAPI func() func()
}

// CPU is the CPU time spent per answered request during one measurement, in
// microseconds: by the process serving both handlers (user + system), by the
// load generator's process, and by the external server (CompareConfig.
// ExternalCPU, 0 without it). Wall-clock req/s on a shared machine moves
// with the other processes' load; CPU per request does much less.
type CPU struct {
	ServerUS   float64 `json:"server_us"`
	LoadgenUS  float64 `json:"loadgen_us"`
	ExternalUS float64 `json:"external_us"`
}

// TotalUS is the CPU time of all three per request.
func (c CPU) TotalUS() float64 { return c.ServerUS + c.LoadgenUS + c.ExternalUS }

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
	// BareCPU and APICPU are the medians over the rounds of CPU per
	// request; CPURatio is BareCPU.TotalUS() / APICPU.TotalUS(), the ratio
	// req/s would have if the machine's cores were the only limit and
	// nothing else ran on them.
	BareCPU  CPU     `json:"bare_cpu"`
	APICPU   CPU     `json:"api_cpu"`
	CPURatio float64 `json:"cpu_ratio"`
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
	if cfg.SessionWrites > 0 {
		writerDone := make(chan struct{})
		go func() { defer close(writerDone); writeSessions(ctx, st, cfg.Fixture, cfg.SessionWrites, log) }()
		defer func() { cancel(); <-writerDone }()
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
	var bareCPU, apiCPU []CPU
	for round := range cfg.Rounds {
		for _, m := range []struct {
			name    string
			targets []string
			out     *[]Result
			cpu     *[]CPU
		}{{"bare", bareTargets, &c.Bare, &bareCPU}, {"api", apiTargets, &c.API, &apiCPU}} {
			lc := cfg.Load
			lc.Targets = m.targets
			var stop func()
			if m.name == "api" && cfg.OnAPI != nil {
				stop = cfg.OnAPI()
			}
			before, err := sampleCPU(ctx, cfg.ExternalCPU)
			if err != nil {
				return nil, err
			}
			res, err := cfg.RunLoad(ctx, lc)
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round+1, m.name, err)
			}
			after, err := sampleCPU(ctx, cfg.ExternalCPU)
			if err != nil {
				return nil, err
			}
			if stop != nil {
				stop()
			}
			cpu := after.perRequest(before, res)
			log.Info("measured", "round", round+1, "target", m.name, "rps", int(res.RPS), "p50_ms", res.P50, "p99_ms", res.P99, "non_2xx", res.Non2xx, "errors", res.Errors,
				"server_cpu_us", round1(cpu.ServerUS), "loadgen_cpu_us", round1(cpu.LoadgenUS), "external_cpu_us", round1(cpu.ExternalUS))
			*m.out = append(*m.out, res)
			*m.cpu = append(*m.cpu, cpu)
		}
	}
	c.BareMedian, c.APIMedian = median(c.Bare), median(c.API)
	c.Ratio = c.APIMedian.RPS / c.BareMedian.RPS
	c.BareCPU, c.APICPU = medianCPU(bareCPU), medianCPU(apiCPU)
	if t := c.APICPU.TotalUS(); t > 0 {
		c.CPURatio = c.BareCPU.TotalUS() / t
	}
	return c, nil
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// cpuSample is the CPU time used so far by this process, its finished
// children (the load generators) and the external server.
type cpuSample struct{ self, children, external time.Duration }

func sampleCPU(ctx context.Context, external func(context.Context) (time.Duration, error)) (cpuSample, error) {
	var s cpuSample
	s.self, s.children = processCPU()
	if external != nil {
		var err error
		if s.external, err = external(ctx); err != nil {
			return s, fmt.Errorf("read the external server's cpu time: %w", err)
		}
	}
	return s, nil
}

// perRequest spreads the CPU time used between before and s over every
// request res answered, the warmup's included.
func (s cpuSample) perRequest(before cpuSample, res Result) CPU {
	n := max(res.Requests, res.AllRequests)
	if n == 0 {
		return CPU{}
	}
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	return CPU{ServerUS: us(s.self - before.self), LoadgenUS: us(s.children - before.children), ExternalUS: us(s.external - before.external)}
}

func medianCPU(cs []CPU) CPU {
	if len(cs) == 0 {
		return CPU{}
	}
	s := slices.Clone(cs)
	slices.SortFunc(s, func(a, b CPU) int { return cmp.Compare(a.TotalUS(), b.TotalUS()) })
	return s[len(s)/2]
}

// writeSessions rewrites rate session views per second of f's sessions,
// each a newer version than any before, until ctx ends.
func writeSessions(ctx context.Context, st store.Store, f Fixture, rate float64, log *slog.Logger) {
	f.defaults()
	const tick = 10 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	r := rand.New(rand.NewPCG(f.Seed, 13))
	// Past the seeded offsets, and past those of earlier runs on the same
	// store (an upsert not newer than the stored view is a no-op).
	offset := int64(boundaryOffset+2*f.Sessions) + time.Now().UnixMicro()
	var due float64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		due += rate * tick.Seconds()
		n := int(due)
		due -= float64(n)
		if n == 0 {
			continue
		}
		now := time.Now().UTC()
		ss := make([]store.SessionView, n)
		for i := range ss {
			offset++
			id := r.IntN(f.Sessions)
			items := make([]store.Scored, f.SessionItems)
			for j := range items {
				items[j] = store.Scored{Item: ItemID(r.IntN(f.Items)), Score: float64(f.SessionItems - j)}
			}
			ss[i] = store.SessionView{SessionID: SessionID(id), UserID: UserID(id % f.Users), Items: items,
				Purchased: []string{items[0].Item}, EventTime: now, Partition: int32(id) % f.Partitions, Offset: offset, UpdatedAt: now}
		}
		if err := st.UpsertSessions(ctx, ss); err != nil && ctx.Err() == nil {
			log.Warn("bench session writes", "err", err)
		}
	}
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
	fmt.Fprintf(w, "cpu µs/request (median of rounds): bare %s; api %s; ratio bare/api %.3f\n", c.BareCPU, c.APICPU, c.CPURatio)
}

func (c CPU) String() string {
	return fmt.Sprintf("%.1f (server %.1f, load generator %.1f, external %.1f)", c.TotalUS(), c.ServerUS, c.LoadgenUS, c.ExternalUS)
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
