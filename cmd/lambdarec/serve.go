package main

import (
	"context"
	"flag"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/batch"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/backend"
	"github.com/lambdarec/lambdarec/serving"
	"github.com/lambdarec/lambdarec/serving/collector"
	"github.com/lambdarec/lambdarec/serving/layerstatus"
)

func init() {
	register("serve", command{
		summary: "run the HTTP API: recommendations, similar items, status, the event collector, health and metrics",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			fs.StringVar(&cfg.Serve.Addr, "http", cfg.Serve.Addr, "HTTP listen address")
			fs.StringVar(&cfg.Store.Backend, "store", cfg.Store.Backend, "serving store: memory or clickhouse")
			brokersFlag(fs, cfg)
			return func(ctx context.Context, e *env) error {
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
				srv, closeServe, err := newServeRole(e.cfg, e.log, st, lake)
				if err != nil {
					return err
				}
				defer closeServe()
				if e.cfg.Store.Backend != "memory" {
					return srv.Run(ctx)
				}
				// The in-process store gets batch views from Iceberg:
				// batch runs elsewhere cannot publish to it.
				loader := batch.NewLoader(lake, e.cfg.Model)
				ctx, cancel := context.WithCancel(ctx)
				defer cancel()
				go loader.Follow(ctx, st, 5*time.Second, e.log.With("component", "batch"))
				return srv.Run(ctx)
			}
		},
	})
}

// serveFlushTimeout bounds how long records still in the producer are given
// to reach Kafka once the server has stopped.
const serveFlushTimeout = 5 * time.Second

// newServeRole wires the serving role: the HTTP server with the read API on
// st, /v1/status reporting every layer from Kafka and lake, the event
// collector mounted at /v1/events and Kafka reachability as a readiness
// check. closeFn flushes and closes the Kafka client; call it once the server
// has stopped.
func newServeRole(cfg config.Config, log *slog.Logger, st store.Store, lake *lakehouse.Lakehouse) (srv *serving.Server, closeFn func(), err error) {
	cl, err := kafka.Connect(cfg.Kafka.Brokers, kafka.SecurityOf(cfg.Kafka), kgo.ClientID("lambdarec-serve"))
	if err != nil {
		return nil, nil, err
	}
	closeFn = func() {
		ctx, cancel := context.WithTimeout(context.Background(), serveFlushTimeout)
		defer cancel()
		if err := cl.Flush(ctx); err != nil {
			log.Warn("kafka flush incomplete", "err", err)
		}
		cl.Close()
	}
	srv, err = serving.NewServer(cfg.Serve, serving.Deps{Log: log.With("component", "http")})
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	col, err := collector.New(collector.Config{
		Topic:          cfg.Kafka.Topic,
		MaxBodyBytes:   cfg.Serve.MaxBodyBytes,
		MaxBatchEvents: cfg.Serve.MaxBatchEvents,
		ProduceTimeout: cfg.Kafka.ProduceTimeout,
	}, collector.Deps{
		Client:     cl,
		Log:        log.With("component", "collector"),
		Registerer: srv.Registry(),
	})
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	srv.Handle("/v1/events", col)
	sec := kafka.SecurityOf(cfg.Kafka)
	srv.AddCheck(serving.Check{Name: "kafka", Func: func(ctx context.Context) error { return kafka.Explain(col.Ready(ctx), sec) }})
	adm := kadm.NewClient(cl)
	api, err := serving.NewAPI(serving.APIConfig{}, serving.APIDeps{
		Store: st,
		Log:   log.With("component", "api"),
		StatusSources: []serving.StatusSource{
			layerstatus.Archive(lake, adm, cfg.Kafka.Topic),
			layerstatus.Speed(adm, cfg.Speed.Group, cfg.Kafka.Topic),
			layerstatus.Batch(lake, adm, cfg.Kafka.Topic),
		},
	})
	if err == nil {
		err = api.Mount(srv)
	}
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	log.Info("serving", "brokers", cfg.Kafka.Brokers, "topic", cfg.Kafka.Topic, "store", cfg.Store.Backend,
		"endpoints", "/v1/recommendations /v1/items/{item_id}/similar /v1/status /v1/events /openapi.json /healthz /readyz /metrics")
	return srv, closeFn, nil
}
