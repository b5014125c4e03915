package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/batch"
	"github.com/lambdarec/lambdarec/internal/buildinfo"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/readscore"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/backend"
	"github.com/lambdarec/lambdarec/serving"
	"github.com/lambdarec/lambdarec/serving/auth"
	"github.com/lambdarec/lambdarec/serving/collector"
	"github.com/lambdarec/lambdarec/serving/layerstatus"
	"github.com/lambdarec/lambdarec/serving/rpc"
	"github.com/lambdarec/lambdarec/serving/ui"
)

func init() {
	register("serve", command{
		summary: "run the HTTP API: recommendations, similar items, status, the event collector, health and metrics",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			fs.StringVar(&cfg.Serve.Addr, "http", cfg.Serve.Addr, "HTTP listen address")
			fs.StringVar(&cfg.Store.Backend, "store", cfg.Store.Backend, "serving store: memory or clickhouse")
			brokersFlag(fs, cfg)
			return func(ctx context.Context, e *env) error {
				// The store may be down at start: serve answers meanwhile
				// with /readyz false and /v1/status naming the store, and
				// takes it when it comes up.
				st, err := backend.OpenServing(ctx, e.cfg, e.log.With("component", "store"))
				if err != nil {
					return err
				}
				defer st.Close()
				lake, err := lakehouse.Open(ctx, e.cfg.Iceberg, e.log.With("component", "lakehouse"))
				if err != nil {
					return err
				}
				defer lake.Close()
				srv, closeServe, err := newServeRole(e.cfg, e.log, st, lake, serveRoleOptions{})
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
		description: "Serves the HTTP API on serve.addr: GET /v1/recommendations, /v1/items/{item_id}/similar, /v1/status, POST /v1/events (the collector), /healthz, /readyz and /metrics; and on the same port the gRPC, gRPC-Web and Connect API lambdarec.v1.RecommendationService with server reflection and grpc.health.v1.",
	})
}

// serveFlushTimeout bounds how long records still in the producer are given
// to reach Kafka once the server has stopped.
const serveFlushTimeout = 5 * time.Second

// serveRoleOptions are what `lambdarec dev` knows better than a standalone
// serving process.
type serveRoleOptions struct {
	// batchInterval is the batch schedule's interval. Default: from
	// batch.cron.
	batchInterval time.Duration
	// speed reports the speed layer. Default: its consumer group in Kafka.
	speed serving.StatusSource
	// registry is served at /metrics. Default: a new one.
	registry *prometheus.Registry
	// faults are more faults for /v1/status (dev's role supervisor, its
	// archive's failing flushes).
	faults []serving.FaultFunc
	// explainer explains speed items (dev: its speed layer). Default:
	// none, explanations say the speed layer is elsewhere.
	explainer serving.SessionExplainer
	// scorer scores live sessions at read time (dev: its speed layer).
	// Default: the speed members of serve.speed_scorers, or none.
	scorer readscore.Scorer
	// speedInProcess: the speed layer runs in this process (dev), whose
	// scorer is scorer; serve.speed_scorers is not used.
	speedInProcess bool
}

// cronInterval is the interval between the next two runs of spec (0 when
// the spec does not parse; the configuration was validated).
func cronInterval(spec string) time.Duration {
	s, err := batch.ParseSchedule(spec)
	if err != nil {
		return 0
	}
	n1 := s.Next(time.Now())
	return s.Next(n1).Sub(n1)
}

// newServeRole wires the serving role: the HTTP server with the read API on
// st, /v1/status reporting every layer from Kafka and lake and judging them
// by the status section's thresholds, the event collector mounted at
// /v1/events and Kafka and the serving store as readiness checks. closeFn
// flushes and closes the Kafka client; call it once the server has stopped.
func newServeRole(cfg config.Config, log *slog.Logger, st store.Store, lake *lakehouse.Lakehouse, o serveRoleOptions) (srv *serving.Server, closeFn func(), err error) {
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
	srv, err = serving.NewServer(cfg.Serve, serving.Deps{Log: log.With("component", "http"), Registry: o.registry})
	var keys *auth.Authenticator
	if err == nil {
		keys, err = secureServer(cfg.Serve, log, srv)
	}
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	if err := srv.Registry().Register(buildinfo.Collector()); err != nil {
		closeFn()
		return nil, nil, fmt.Errorf("register build info: %w", err)
	}
	col, err := collector.New(collector.Config{
		Topic:               cfg.Kafka.Topic,
		MaxBodyBytes:        cfg.Serve.MaxBodyBytes,
		MaxBatchEvents:      cfg.Serve.MaxBatchEvents,
		ProduceTimeout:      cfg.Kafka.ProduceTimeout,
		MaxInflightRequests: cfg.Serve.MaxInflightRequests,
		MaxInflightBytes:    cfg.Serve.MaxInflightBytes,
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
	if o.batchInterval <= 0 {
		o.batchInterval = cronInterval(cfg.Batch.Cron)
	}
	if o.speed == nil {
		o.speed = layerstatus.Speed(adm, cfg.Speed.Group, cfg.Kafka.Topic)
	}
	scorer, err := speedScorer(cfg.Serve, o.scorer, o.speedInProcess)
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	api, err := serving.NewAPI(serving.APIConfig{
		Model:            cfg.Model,
		ReadScoreTimeout: cfg.Serve.SpeedScoreTimeout,
		Thresholds: serving.StatusThresholds{
			MaxLagRecords: cfg.Status.MaxLag.Records,
			MaxLagTime:    cfg.Status.MaxLag.Time,
			BatchInterval: o.batchInterval,
		},
	}, serving.APIDeps{
		Store:     st,
		Log:       log.With("component", "api"),
		Explainer: o.explainer,
		Scorer:    scorer,
		StatusSources: []serving.StatusSource{
			layerstatus.Archive(lake, adm, cfg.Kafka.Topic),
			o.speed,
			layerstatus.Batch(lake, adm, cfg.Kafka.Topic),
		},
	})
	if err == nil {
		for _, f := range o.faults {
			api.AddFaultSource(f)
		}
	}
	if err == nil {
		err = api.Mount(srv)
	}
	var rpcAPI *rpc.Service
	if err == nil {
		// The same reads, collector and keys as gRPC, gRPC-Web and Connect
		// on the same port.
		rpcAPI, err = rpc.New(rpc.Config{MaxMessageBytes: cfg.Serve.MaxBodyBytes}, rpc.Deps{
			API: api, Collector: col, Auth: keys, Ready: srv.Ready, Log: log.With("component", "rpc"),
		})
	}
	var sampler *ui.Sampler
	if err == nil {
		sampler, err = ui.New(ui.Config{}, ui.Deps{Status: api.Status, Gatherer: srv.Registry(), Log: log.With("component", "ui")})
	}
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	rpcAPI.Mount(srv)
	sampler.Mount(srv)
	srv.AddRunner(sampler.Run)
	log.Info("serving", "brokers", cfg.Kafka.Brokers, "topic", cfg.Kafka.Topic, "store", cfg.Store.Backend,
		"endpoints", "/v1/recommendations /v1/items/{item_id}/similar /v1/status /v1/events /openapi.json /ui /healthz /readyz /metrics",
		"rpc", rpc.ServiceName)
	return srv, closeFn, nil
}
