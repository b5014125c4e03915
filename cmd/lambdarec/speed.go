package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/lambdarec/lambdarec/batch"
	"github.com/lambdarec/lambdarec/internal/buildinfo"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/readscore"
	"github.com/lambdarec/lambdarec/internal/store/backend"
	"github.com/lambdarec/lambdarec/speed"
)

func init() {
	register("speed", command{
		summary: "run the speed layer: session state and real-time recommendations past the batch boundary",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			brokersFlag(fs, cfg)
			fs.StringVar(&cfg.Kafka.Topic, "topic", cfg.Kafka.Topic, "topic of the events")
			fs.StringVar(&cfg.Speed.Group, "group", cfg.Speed.Group, "consumer group")
			fs.StringVar(&cfg.Store.Backend, "store", cfg.Store.Backend, "serving store the real-time view goes to: clickhouse, or memory (only useful inside lambdarec dev)")
			fs.StringVar(&cfg.Speed.MetricsAddr, "metrics-addr", cfg.Speed.MetricsAddr, "serve /metrics, /healthz and /readyz here (empty: off)")
			resetToBatch := fs.Bool("reset-to-batch", false, "before starting, set the group's offsets from the served batch's boundary (for a deployment that lost them; every speed instance must be stopped)")
			return func(ctx context.Context, e *env) error {
				log := e.log.With("component", "speed")
				if *resetToBatch {
					if err := speedResetToBatch(ctx, e, log); err != nil {
						return err
					}
				}
				if e.cfg.Store.Backend == "memory" {
					log.Warn("the real-time view goes to an in-process store no other process reads; set store.backend: clickhouse")
				}
				st, err := backend.Open(ctx, e.cfg, e.log.With("component", "store"))
				if err != nil {
					return err
				}
				defer st.Close()
				lake, err := lakehouse.Open(ctx, e.cfg.Iceberg, e.log.With("component", "lakehouse"))
				if err != nil {
					return err
				}
				defer lake.Close()
				token, err := e.cfg.SpeedScoreToken() // never logged
				if err != nil {
					return fmt.Errorf("speed.score_token: %w", err)
				}
				reg := prometheus.NewRegistry()
				reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector())
				sc := speed.FromConfig(&e.cfg)
				sc.Params = &e.cfg.Model
				sc.ClientOpts = append(sc.ClientOpts, kafka.FetchOpts(e.cfg.Kafka)...)
				layer, err := speed.New(sc, speed.Deps{
					Views:      st,
					Batches:    withTopicID(batchSource(batch.NewLoader(lake, e.cfg.Model)), lake, e.cfg.Kafka.Topic),
					Log:        log,
					Registerer: reg,
				})
				if err != nil {
					return err
				}
				watch := &speedStateWatch{last: layer.LastShed, log: log}
				wctx, stopWatch := context.WithCancel(ctx)
				defer stopWatch()
				go watch.run(wctx)
				if e.cfg.Speed.MetricsAddr != "" {
					ready := allReady(func(context.Context) error {
						if !layer.Ready() {
							return errors.New("speed layer: not yet joined its group or replayed its partitions to their end offsets")
						}
						return nil
					}, storeReady(st))
					stop, err := serveMetrics(e.cfg.Speed.MetricsAddr, reg, ready, log,
						metricsRoute{"GET /v1/status", speedStatusHandler(layer, watch)},
						metricsRoute{"POST " + readscore.Path, readscore.Handler(layer, token)})
					if err != nil {
						return err
					}
					defer stop()
				}
				return layer.Run(ctx)
			}
		},
		description: "Consumes the topic events and keeps each session's real-time state and recommendations in the serving store, for events past the batch boundary. Serves /healthz, /readyz, /metrics, its own /v1/status (degraded speed_state_full for a minute after it evicted sessions for its bounds) and POST /internal/v1/score (a session scored now from its recent items, for serve's read-time scoring; bearer token from speed.score_token_file/_env) on speed.metrics_addr.",
	})
}

// speedResetToBatch sets the speed group's offsets from the served batch
// (speed.ResetToBatch), looking back twice the session timeout.
func speedResetToBatch(ctx context.Context, e *env, log *slog.Logger) error {
	lake, err := lakehouse.Open(ctx, e.cfg.Iceberg, e.log.With("component", "lakehouse"))
	if err != nil {
		return err
	}
	defer lake.Close()
	served, ok, err := batch.ServedRun(ctx, lake)
	if err != nil {
		return fmt.Errorf("reset to batch: %w", err)
	}
	if !ok {
		return errors.New("reset to batch: no batch recorded yet; without a batch the speed layer counts every record, start it without --reset-to-batch")
	}
	cl, err := kafka.Connect(e.cfg.Kafka.Brokers, kafka.SecurityOf(e.cfg.Kafka))
	if err != nil {
		return err
	}
	defer cl.Close()
	offsets, err := speed.ResetToBatch(ctx, kadm.NewClient(cl), e.cfg.Speed.Group, e.cfg.Kafka.Topic, served.Run.Meta(), 2*e.cfg.Speed.SessionTimeout)
	if err != nil {
		return fmt.Errorf("reset to batch %s: %w", served.Run.BatchID, err)
	}
	log.Info("speed group reset to the served batch", "group", e.cfg.Speed.Group, "batch_id", served.Run.BatchID,
		"boundary", served.Run.Boundary, "offsets", offsets)
	return nil
}
