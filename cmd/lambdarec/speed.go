package main

import (
	"context"
	"errors"
	"flag"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/lambdarec/lambdarec/batch"
	"github.com/lambdarec/lambdarec/internal/buildinfo"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
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
			return func(ctx context.Context, e *env) error {
				log := e.log.With("component", "speed")
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
				reg := prometheus.NewRegistry()
				reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector())
				sc := speed.FromConfig(&e.cfg)
				sc.Params = &e.cfg.Model
				layer, err := speed.New(sc, speed.Deps{
					Views:      st,
					Batches:    withTopicID(batchSource(batch.NewLoader(lake, e.cfg.Model)), lake, e.cfg.Kafka.Topic),
					Log:        log,
					Registerer: reg,
				})
				if err != nil {
					return err
				}
				if e.cfg.Speed.MetricsAddr != "" {
					ready := allReady(func(context.Context) error {
						if !layer.Ready() {
							return errors.New("speed layer: not yet joined its group or replayed its partitions to their end offsets")
						}
						return nil
					}, storeReady(st))
					stop, err := serveMetrics(e.cfg.Speed.MetricsAddr, reg, ready, log)
					if err != nil {
						return err
					}
					defer stop()
				}
				return layer.Run(ctx)
			}
		},
		description: "Consumes the topic events and keeps each session's real-time state and recommendations in the serving store, for events past the batch boundary. Serves /healthz, /readyz and /metrics on speed.addr.",
	})
}
