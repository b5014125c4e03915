package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/batch"
	"github.com/lambdarec/lambdarec/batch/archive"
	"github.com/lambdarec/lambdarec/internal/broker"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/store/backend"
	"github.com/lambdarec/lambdarec/serving"
	"github.com/lambdarec/lambdarec/serving/layerstatus"
	"github.com/lambdarec/lambdarec/speed"
)

func init() {
	register("dev", command{
		summary: "run every role in one process on the embedded default: broker, generator, archive, speed, batch schedule, serve",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			var o devOptions
			fs.StringVar(&o.dataDir, "data-dir", "./lambdarec-data", "where the broker's log, the Iceberg catalog and warehouse live; a second start resumes from it")
			fs.StringVar(&cfg.Serve.Addr, "http", cfg.Serve.Addr, "HTTP listen address of the API")
			fs.StringVar(&cfg.Broker.Addr, "kafka", cfg.Broker.Addr, "listen address of the embedded Kafka-protocol broker")
			fs.Float64Var(&o.rate, "rate", 50, "generated events per second (0 = no generator)")
			fs.DurationVar(&o.batchEvery, "batch-every", time.Minute, "interval between batch recomputes")
			fs.Int64Var(&o.seed, "seed", 1, "seed of the generated clickstream")
			fs.StringVar(&o.store, "store", "memory", "serving store: memory (in process), redis (at --redis-addr) or clickhouse (at --clickhouse-dsn)")
			fs.StringVar(&cfg.Store.Redis.Addr, "redis-addr", cfg.Store.Redis.Addr, "Redis host:port with --store redis (other settings: store.redis.*)")
			fs.StringVar(&cfg.ClickHouse.DSN, "clickhouse-dsn", cfg.ClickHouse.DSN, "ClickHouse DSN with --store clickhouse (other settings: clickhouse.*)")
			fs.StringVar(&o.pprof, "pprof", "", "serve Go's runtime profiles (/debug/pprof/, block and mutex profiling on) at this address; empty: off")
			fs.StringVar(&o.speedTrace, "speed-trace", "", "write a line per iteration of the speed layer's consuming loop to this file (a diagnostic: when it polled, processed, flushed; see speedprobe --loop-trace); empty: off")
			return func(ctx context.Context, e *env) error { return runDev(ctx, e, o) }
		},
		description: "Runs the whole platform in one process on the embedded defaults: the broker, a clickstream generator, the archive, the speed layer, batch runs on a short schedule and the HTTP API. A failed role is restarted with backoff; only a failing serve ends dev.",
	})
}

// devMaxViewDelay is dev's speed.max_view_delay unless the configuration
// file or the environment sets it. It changes nothing while the speed layer keeps up
// (views are then written within a millisecond of their records); while it
// is 10,000 records or more behind, a session's records applied within this
// window are scored once. The window is processing time, and a layer that
// is behind in dev processes far fewer than 50,000 records a second, so
// what coalesces is fewer records than the flood brings in that time: in
// the generator's stream a window of 2,500 records holds 0.91 distinct
// sessions per record, 5,000: 0.80, 12,500: 0.58, 25,000: 0.40, 50,000:
// 0.27. Scoring views is the larger part of the loop of a layer that is
// behind (speedprobe --loop-trace: 56–63% of it in the flood), so dev, whose
// roles share two cores, catches up sooner with a longer window: in dev
// under a 50,000 events/s flood (internal/bench/speedprobe/dev-under-load.sh,
// 3 runs each, alternated), views per record 0.38–0.43 (median 0.42) with
// 250 ms and 0.32–0.36 (median 0.33) with 1 s; by the loop trace, fresh
// views 0.37 per record with 250 ms and 0.19–0.23 with 1 s, rescorings
// 0.11–0.13 either way. The cost: while 10,000 or more records behind, a
// view may follow its record by up to this much more than the backlog.
const devMaxViewDelay = time.Second

type devOptions struct {
	dataDir    string
	rate       float64
	batchEvery time.Duration
	seed       int64
	store      string // store.backend; "" is memory
	pprof      string // address of the profiles; "" none
	speedTrace string // file of the speed layer's loop trace; "" none
}

// devConfig points every role of cfg at the embedded default under dataDir.
func devConfig(cfg config.Config, o devOptions) (config.Config, error) {
	dir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return cfg, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return cfg, fmt.Errorf("data directory: %w", err)
	}
	cfg.Broker.DataDir = filepath.Join(dir, "kafka")
	cfg.Kafka.Brokers = []string{cfg.Broker.Addr}
	cfg.Iceberg.Catalog = "sql"
	cfg.Iceberg.SQLDialect = "sqlite"
	cfg.Iceberg.CatalogURI = "file:" + filepath.Join(dir, "catalog.db")
	cfg.Iceberg.Warehouse = "file://" + filepath.Join(dir, "warehouse")
	cfg.Store.Backend = cmp.Or(o.store, "memory")
	// Small micro-batches, so a batch soon has something to read.
	cfg.Archive.MaxInterval = min(cfg.Archive.MaxInterval, 2*time.Second)
	cfg.Speed.BatchPollInterval = min(cfg.Speed.BatchPollInterval, time.Second)
	if devDefault(&cfg, "speed.max_view_delay", cfg.Speed.MaxViewDelay == config.Default().Speed.MaxViewDelay) {
		cfg.Speed.MaxViewDelay = devMaxViewDelay
	}
	devMaintenance(&cfg)
	devMemoryDefaults(&cfg)
	return cfg, cfg.Validate()
}

func runDev(ctx context.Context, e *env, o devOptions) error {
	if o.batchEvery <= 0 {
		return errors.New("--batch-every must be positive")
	}
	if o.rate < 0 {
		return errors.New("--rate must not be negative")
	}
	cfg, err := devConfig(e.cfg, o)
	if err != nil {
		return err
	}
	log := e.log
	if cfg.Dev.MaxMemory > 0 {
		defer debug.SetMemoryLimit(capMemoryLimit(cfg.Dev.MaxMemory, "dev.max_memory", log))
	}
	if o.pprof != "" {
		stop, err := servePprof(o.pprof, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	if o.speedTrace != "" {
		stop, err := traceSpeedLoop(o.speedTrace, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	// One /metrics for every role.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var b *broker.Broker
	// The broker's goroutines carry the profile label role=broker (see
	// supervisor.run).
	pprof.Do(ctx, pprof.Labels("role", "broker"), func(context.Context) {
		b, err = broker.New(embeddedBroker(cfg, reg), log.With("component", "broker"))
	})
	if err != nil {
		return err
	}
	defer b.Close() // last: every role below stops first
	cfg.Kafka.Brokers = []string{b.Addr()}

	lake, err := lakehouse.Open(ctx, cfg.Iceberg, log.With("component", "lakehouse"))
	if err != nil {
		return err
	}
	defer lake.Close()
	st, err := backend.Open(ctx, cfg, log.With("component", "store"))
	if err != nil {
		return err
	}
	defer st.Close()

	// Batch: on a schedule; the follower publishes each new batch to the
	// serving store, and the speed layer switches to it.
	runner, err := batch.New(batch.Config{Lake: lake, Topic: cfg.Kafka.Topic, Params: &cfg.Model, TopK: cfg.Batch.TopK, MaxMemory: cfg.Batch.MaxMemory}, log.With("component", "batch"))
	if err != nil {
		return err
	}
	sched, err := batch.NewScheduler(runner, "@every "+o.batchEvery.String(), log.With("component", "batch"))
	if err != nil {
		return err
	}
	loader := batch.NewLoader(lake, cfg.Model)
	maint, err := newMaintainer(cfg, lake, st, log)
	if err != nil {
		return err
	}

	runMetrics, err := batch.NewRunMetrics(reg)
	if err != nil {
		return err
	}
	sched.SetMetrics(runMetrics)
	sc := speed.FromConfig(&cfg)
	sc.Params = &cfg.Model
	sc.ClientOpts = append(sc.ClientOpts, kafka.FetchOpts(cfg.Kafka)...)
	sp, err := speed.New(sc, speed.Deps{
		Views:      st,
		Batches:    withTopicID(batchSource(loader), lake, cfg.Kafka.Topic),
		Log:        log.With("component", "speed"),
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	bounds, err := newDevBounds(st, sp.LastShed, reg, log.With("component", "dev"))
	if err != nil {
		return err
	}
	boundsCtx, stopBounds := context.WithCancel(ctx)
	defer stopBounds()
	go bounds.run(boundsCtx)
	// The archive and the batch runs yield the CPU to the speed layer while
	// it is behind (dev_priority.go).
	prio, err := newSpeedFirst(func() int64 { n, _ := sp.Lag(); return n }, reg, log.With("component", "dev"))
	if err != nil {
		return err
	}
	arch, err := archive.New(cfg, archive.Deps{Log: log.With("component", "archive"), Lake: lake, Registerer: reg,
		Yield: func(ctx context.Context) { prio.hold(ctx, "archive", archiveMaxHold) }})
	if err != nil {
		return err
	}

	sup := newSupervisor(log)
	srv, closeServe, err := newServeRole(cfg, log, st, lake, serveRoleOptions{
		batchInterval:  o.batchEvery,
		speed:          layerstatus.SpeedLayer(sp, cfg.Speed.Group),
		registry:       reg,
		faults:         []serving.FaultFunc{sup.faults, archiveFaults(arch), brokerFaults(b), bounds.faults},
		explainer:      sp,
		scorer:         sp, // its serving layer scores live sessions at read time through it
		speedInProcess: true,
	})
	if err != nil {
		return err
	}
	defer closeServe()

	roles := []role{
		{name: "archive", layer: "archive", run: arch.Run},
		{name: "speed", layer: "speed", run: sp.Run},
		{name: "batch", layer: "batch", run: func(ctx context.Context) error {
			devFirstBatches(ctx, sched, o.batchEvery, log.With("component", "batch"))
			return devSchedule(ctx, sched, o.batchEvery, prio, log.With("component", "batch"))
		}},
		{name: "maintain", layer: "batch", run: maint.Run},
		{name: "batch-follower", layer: "batch", run: func(ctx context.Context) error {
			return loader.Follow(ctx, st, time.Second, log.With("component", "batch"))
		}},
		// Without the API nothing answers: its failure ends dev.
		{name: "serve", layer: serving.StoreLayer, run: srv.Run, critical: true},
	}
	if o.rate > 0 {
		roles = append(roles, role{name: "generate", layer: "generate", mayFinish: true,
			run: func(ctx context.Context) error { return devGenerate(ctx, cfg, o, log) }})
	}
	printDevBanner(e, cfg, o)
	err = sup.run(ctx, roles)
	log.Info("stopping")
	if err != nil {
		return err
	}
	log.Info("stopped; start again with the same --data-dir to resume", "data_dir", o.dataDir)
	return nil
}

// batchSource adapts the loader to the speed layer.
func batchSource(l *batch.Loader) speed.BatchSource {
	return speed.BatchSourceFunc(func(ctx context.Context) (*speed.Batch, error) {
		loaded, err := l.Latest(ctx)
		if err != nil || loaded == nil {
			return nil, err
		}
		return &speed.Batch{Meta: loaded.Run.Meta(), Model: loaded.Model}, nil
	})
}

func devGenerate(ctx context.Context, cfg config.Config, o devOptions, log *slog.Logger) error {
	g, err := generate.New(generate.Config{
		Seed:      o.seed,
		Start:     time.Now(),
		Rate:      o.rate,
		ClockRate: o.rate, // event time keeps pace with the wall clock
		Log:       log.With("component", "generate"),
	})
	if err != nil {
		return err
	}
	cl, err := kafka.Connect(cfg.Kafka.Brokers, kafka.SecurityOf(cfg.Kafka), kgo.ProducerLinger(generate.KafkaLinger))
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = g.Run(ctx, generate.NewKafkaSink(cl, cfg.Kafka.Topic))
	return err
}

func printDevBanner(e *env, cfg config.Config, o devOptions) {
	host, port, _ := net.SplitHostPort(cfg.Serve.Addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http://"
	if cfg.Serve.TLS.Enabled() {
		scheme = "https://"
	}
	base := scheme + net.JoinHostPort(host, port)
	fmt.Fprintf(e.stdout, `lambdarec dev is running (Ctrl-C stops it; data in %s)
  API:      %s   (OpenAPI at %s/openapi.json, status at %s/v1/status)
  Kafka:    %s   (topics %s, %s)
  batch:    every %s; generator: %s events/s
  auth:     %s

try (the README's walk-through):
  curl '%s/v1/items/i02621/similar?k=5'
  curl '%s/v1/recommendations?user_id=u000001&session_id=s1&k=5&explain=true'
  open %s/ui   (the live status page)
`, o.dataDir, base, base, base, cfg.Broker.Addr, cfg.Kafka.Topic, cfg.Kafka.DLQTopic, o.batchEvery,
		strconv.FormatFloat(o.rate, 'f', -1, 64), authHint(cfg.Serve), base, base, base)
}
