package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/lambdarec/lambdarec/batch"
	"github.com/lambdarec/lambdarec/internal/buildinfo"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/backend"
)

func init() {
	register("batch run", command{
		summary: "recompute the batch view once from the current Iceberg snapshot of events",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			batchFlags(fs, cfg)
			fs.StringVar(&cfg.Store.Backend, "store", cfg.Store.Backend, "serving store to publish the view to: clickhouse, or memory (the serving process follows Iceberg)")
			force := fs.Bool("force", false, "run even if the current batch already covers the current snapshot")
			full := fs.Bool("full", false, "recompute from every retained event instead of folding the new records into the previous batch")
			return func(ctx context.Context, e *env) error {
				r, closeFn, err := newBatchRunner(ctx, e.cfg, e.log, *force, *full)
				if err != nil {
					return err
				}
				defer closeFn()
				res, err := r.Run(ctx)
				if errors.Is(err, batch.ErrNoEvents) {
					fmt.Fprintln(e.stdout, "no events archived yet: nothing to do")
					return nil
				}
				if err != nil {
					return err
				}
				run := res.Run
				if res.UpToDate {
					fmt.Fprintf(e.stdout, "batch %s already covers snapshot %d: nothing to do\n", run.BatchID, run.SourceSnapshotID)
					return nil
				}
				fmt.Fprintf(e.stdout, "batch %s (%s): snapshot %d, %d events read, %d new (%d accepted, %d duplicates in all), %d pairs, %d items, %d users, %d ms\n",
					run.BatchID, run.Mode, run.SourceSnapshotID, run.EventsRead, run.EventsNew, run.EventsAccepted, run.EventsDuplicate,
					run.Pairs, run.Items, run.Users, run.DurationMS)
				return nil
			}
		},
		description: "Reads the current Iceberg snapshot of events, recomputes the co-visitation model, user recommendations and popular items, and publishes them to the serving store as one batch with its Kafka offset boundary. Does nothing when the current batch already covers the snapshot (unless --force).",
	})
	register("batch schedule", command{
		summary: "run batch recomputes on a cron schedule in-process, never two at once",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			batchFlags(fs, cfg)
			fs.StringVar(&cfg.Batch.Cron, "cron", cfg.Batch.Cron, `cron spec: 5 fields, or a descriptor such as "@hourly" or "@every 10m"`)
			fs.StringVar(&cfg.Batch.MetricsAddr, "metrics-addr", cfg.Batch.MetricsAddr, "serve /metrics (the batch-run metrics) and /healthz here (empty: off)")
			return func(ctx context.Context, e *env) error {
				if _, err := batch.ParseSchedule(e.cfg.Batch.Cron); err != nil {
					return err
				}
				r, closeFn, err := newBatchRunner(ctx, e.cfg, e.log, false, false)
				if err != nil {
					return err
				}
				defer closeFn()
				s, err := batch.NewScheduler(r, e.cfg.Batch.Cron, e.log.With("component", "batch"))
				if err != nil {
					return err
				}
				if e.cfg.Batch.MetricsAddr != "" {
					reg := prometheus.NewRegistry()
					reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector())
					rm, err := batch.NewRunMetrics(reg)
					if err != nil {
						return err
					}
					s.SetMetrics(rm)
					stop, err := serveMetrics(e.cfg.Batch.MetricsAddr, reg, nil, e.log)
					if err != nil {
						return err
					}
					defer stop()
				}
				// Table maintenance on maintenance.cron, beside the batches.
				lake, err := lakehouse.Open(ctx, e.cfg.Iceberg, e.log.With("component", "lakehouse"))
				if err != nil {
					return err
				}
				defer lake.Close()
				var st store.Store // the hot retention of a shared serving store
				if e.cfg.Store.Backend != "memory" {
					if st, err = backend.Open(ctx, e.cfg, e.log.With("component", "store")); err != nil {
						return err
					}
					defer st.Close()
				}
				m, err := newMaintainer(e.cfg, lake, st, e.log)
				if err != nil {
					return err
				}
				g, gctx := errgroup.WithContext(ctx)
				g.Go(func() error { return s.Run(gctx) })
				g.Go(func() error { return m.Run(gctx) })
				return g.Wait()
			}
		},
		description: "Runs batch run on the cron schedule batch.cron in this process, never two runs at once, and table maintenance on maintenance.cron. Stops at SIGTERM after the run in progress. With batch.metrics_addr (--metrics-addr), serves the batch-run metrics (runs by result, duration, last success) at /metrics.",
	})
}

func batchFlags(fs *flag.FlagSet, cfg *config.Config) {
	fs.StringVar(&cfg.Iceberg.Warehouse, "warehouse", cfg.Iceberg.Warehouse, "Iceberg warehouse: file://… or s3://bucket/prefix")
	fs.StringVar(&cfg.Iceberg.CatalogURI, "catalog-uri", cfg.Iceberg.CatalogURI, "catalog: SQL DSN or REST endpoint")
	fs.IntVar(&cfg.Batch.TopK, "top-k", cfg.Batch.TopK, "neighbours per item and recommendations per user")
}

// newBatchRunner opens the lakehouse and, unless it is the in-process one,
// the serving store each new batch view is published to; it returns the
// runner and a function that closes them. (An in-process store lives in the
// serving process, which follows batch_runs in Iceberg itself.)
func newBatchRunner(ctx context.Context, cfg config.Config, log *slog.Logger, force, full bool) (*batch.Runner, func(), error) {
	lake, err := lakehouse.Open(ctx, cfg.Iceberg, log.With("component", "lakehouse"))
	if err != nil {
		return nil, nil, err
	}
	closeFn := func() { lake.Close() }
	var st store.Store
	if cfg.Store.Backend != "memory" {
		if st, err = backend.Open(ctx, cfg, log.With("component", "store")); err != nil {
			closeFn()
			return nil, nil, err
		}
		closeFn = func() { st.Close(); lake.Close() }
	}
	capMemoryLimit(batch.RuntimeMemoryLimit(cfg.Batch.MaxMemory), "batch.max_memory", log)
	p := cfg.Model
	r, err := batch.New(batch.Config{
		Lake:   lake,
		Topic:  cfg.Kafka.Topic,
		Params: &p,
		TopK:   cfg.Batch.TopK,
		Force:  force,
		Full:   full,
		Store:  st,
		// batch.max_memory bounds the run's parts and, as the Go memory
		// limit of a batch process, its heap.
		MaxMemory: cfg.Batch.MaxMemory,
	}, log.With("component", "batch"))
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	return r, closeFn, nil
}
