package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/backend"
	"github.com/lambdarec/lambdarec/internal/store/redis"
	"github.com/lambdarec/lambdarec/serving/loadgen"
)

func init() {
	register("bench serve", command{
		summary: "benchmark GET /v1/recommendations against a bare net/http handler, load from a second process",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			var cc loadgen.CompareConfig
			var jsonOut bool
			var cpuProfile string
			fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of this process during the first measurement of the API to this file")
			fs.StringVar(&cfg.Store.Backend, "store", cfg.Store.Backend, "serving store backend: memory, redis or clickhouse")
			fs.StringVar(&cfg.Store.Sessions, "session-store", cfg.Store.Sessions, "where sessions live when not in the backend: redis (with --store clickhouse)")
			fs.StringVar(&cfg.ClickHouse.DSN, "clickhouse-dsn", cfg.ClickHouse.DSN, "ClickHouse DSN with --store clickhouse; the benchmark publishes a synthetic batch there, so use a scratch database")
			fs.StringVar(&cfg.Store.Redis.Addr, "redis-addr", cfg.Store.Redis.Addr, "Redis host:port with --store redis or --session-store redis (other settings: store.redis.*; use a scratch prefix or db)")
			fs.IntVar(&cc.Load.Connections, "connections", 32, "concurrent keep-alive connections")
			fs.DurationVar(&cc.Load.Duration, "duration", 10*time.Second, "measured time of each measurement")
			fs.DurationVar(&cc.Load.Warmup, "warmup", 2*time.Second, "unmeasured warmup before each measurement")
			fs.IntVar(&cc.Rounds, "rounds", 3, "rounds; each measures the bare handler, then the API")
			fs.IntVar(&cc.K, "k", 20, "k of every request")
			fs.Float64Var(&cc.SessionShare, "session-share", loadgen.DefaultSessionShare, "share of requests naming a session (each reads the real-time view from the store)")
			fs.Float64Var(&cc.SessionWrites, "session-writes", 0, "session views rewritten per second through the store during the measurements (invalidates session caches)")
			fs.IntVar(&cc.Fixture.Items, "items", 20_000, "items in the synthetic batch view")
			fs.IntVar(&cc.Fixture.Users, "users", 20_000, "users in the synthetic batch view")
			fs.IntVar(&cc.Fixture.Sessions, "sessions", 20_000, "sessions in the synthetic real-time view")
			fs.BoolVar(&jsonOut, "json", false, "print the comparison as JSON")
			return func(ctx context.Context, e *env) error {
				self, err := os.Executable()
				if err != nil {
					return fmt.Errorf("find the lambdarec binary for the load generator: %w", err)
				}
				st, err := backend.Open(ctx, e.cfg, e.log)
				if err != nil {
					return err
				}
				defer st.Close()
				cc.RunLoad = loadgen.ExecRunner(self, "bench", "load")
				cc.Log = e.log.With("component", "bench")
				if c, ok := st.(interface {
					ServerCPU(context.Context) (time.Duration, error)
				}); ok {
					cc.ExternalCPU = c.ServerCPU
				}
				if cpuProfile != "" {
					f, err := os.Create(cpuProfile)
					if err != nil {
						return fmt.Errorf("cpu profile: %w", err)
					}
					defer f.Close()
					cc.OnAPI = profileAPI(f, e)
				}
				c, err := loadgen.Compare(ctx, st, cc)
				if err != nil {
					return err
				}
				if jsonOut {
					enc := json.NewEncoder(e.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(c)
				}
				fmt.Fprintf(e.stdout, "store %s, %d items, %d users, %d sessions, k=%d, session share %.2f, session writes %.0f/s\n", backendName(e.cfg), cc.Fixture.Items, cc.Fixture.Users, cc.Fixture.Sessions, cc.K, cc.SessionShare, cc.SessionWrites)
				c.Report(e.stdout)
				reportSessionCache(e.stdout, st)
				return nil
			}
		},
		description: "Starts lambdarec's HTTP API and a bare net/http handler side by side, drives both from a second process with keep-alive connections, and prints req/s and latency percentiles with their ratio.",
	})

	register("bench load", command{
		summary: "HTTP load generator: drive URLs with keep-alive connections, report req/s and latency percentiles",
		setup: func(fs *flag.FlagSet, _ *config.Config) func(context.Context, *env) error {
			runLoad := loadgen.LoadCommand(fs)
			return func(ctx context.Context, e *env) error { return runLoad(ctx, e.stdout) }
		},
		description: "Drives the given URLs with keep-alive connections for a duration and prints req/s and latency percentiles (the load half of bench serve).",
	})
}

// reportSessionCache prints the Redis session cache's counters, when the
// sessions live in Redis.
func reportSessionCache(w io.Writer, st store.Store) {
	if sp, ok := st.(interface{ SessionStore() store.Store }); ok {
		st = sp.SessionStore()
	}
	rs, ok := st.(*redis.Store)
	if !ok {
		return
	}
	c := rs.Stats()
	rate := 0.0
	if n := c.SessionHits + c.SessionMisses; n > 0 {
		rate = float64(c.SessionHits) / float64(n)
	}
	fmt.Fprintf(w, "session cache (whole run): active %v, hits %d, misses %d (hit rate %.3f), invalidations %d, resets %d, entries %d; redis read round trips %d\n",
		c.SessionCacheActive, c.SessionHits, c.SessionMisses, rate, c.SessionInvalidations, c.SessionCacheResets, c.SessionCacheEntries, c.Queries)
}

// profileAPI returns a CompareConfig.OnAPI that profiles the first API
// measurement into f (one profile per file).
func profileAPI(f *os.File, e *env) func() func() {
	done := false
	return func() func() {
		if done {
			return func() {}
		}
		done = true
		if err := pprof.StartCPUProfile(f); err != nil {
			e.log.Warn("cpu profile", "err", err)
			return func() {}
		}
		return pprof.StopCPUProfile
	}
}

func backendName(cfg config.Config) string {
	name := cmp.Or(cfg.Store.Backend, "memory")
	if cfg.Store.Sessions != "" {
		name += " (sessions in " + cfg.Store.Sessions + ")"
	}
	return name
}
