package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/batch/archive"
	"github.com/lambdarec/lambdarec/internal/buildinfo"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/serving"
)

func init() {
	register("archive", command{
		summary: "archive Kafka events into the Iceberg events table, exactly once",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			brokersFlag(fs, cfg)
			fs.StringVar(&cfg.Kafka.Topic, "topic", cfg.Kafka.Topic, "topic to archive")
			fs.StringVar(&cfg.Iceberg.Warehouse, "warehouse", cfg.Iceberg.Warehouse, "Iceberg warehouse: file://… or s3://bucket/prefix")
			fs.StringVar(&cfg.Iceberg.CatalogURI, "catalog-uri", cfg.Iceberg.CatalogURI, "catalog: SQL DSN or REST endpoint")
			fs.IntVar(&cfg.Archive.MaxRecords, "max-records", cfg.Archive.MaxRecords, "close a micro-batch at this many records")
			fs.DurationVar(&cfg.Archive.MaxInterval, "max-interval", cfg.Archive.MaxInterval, "close a micro-batch this long after its first record")
			fs.StringVar(&cfg.Archive.MetricsAddr, "metrics-addr", cfg.Archive.MetricsAddr, "serve /metrics and /healthz here (empty: off)")
			return func(ctx context.Context, e *env) error {
				log := e.log.With("component", "archive")
				reg := prometheus.NewRegistry()
				reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Collector())
				lake, err := lakehouse.Open(ctx, e.cfg.Iceberg, e.log.With("component", "lakehouse"))
				if err != nil {
					return err
				}
				defer lake.Close()
				a, err := archive.New(e.cfg, archive.Deps{Log: log, Lake: lake, Registerer: reg})
				if err != nil {
					return err
				}
				if e.cfg.Archive.MetricsAddr != "" {
					cl, err := kafka.Connect(e.cfg.Kafka.Brokers, kafka.SecurityOf(e.cfg.Kafka), kgo.ClientID("lambdarec-archive-readyz"))
					if err != nil {
						return err
					}
					defer cl.Close()
					ready := allReady(roleReady("archive", a.Ready), kafkaTopicReady(cl, e.cfg.Kafka.Topic), icebergReady(lake))
					stop, err := serveMetrics(e.cfg.Archive.MetricsAddr, reg, ready, log)
					if err != nil {
						return err
					}
					defer stop()
				}
				return a.Run(ctx)
			}
		},
		description: "Reads the Kafka topic events and appends each record once to the Iceberg table events, committing the Kafka offsets in the same Iceberg snapshot, so that a restart resumes exactly where the last commit ended. Invalid records go to the dead-letter topic. Serves /healthz, /readyz and /metrics on archive.addr.",
	})
}

// metricsRoute is one more handler of serveMetrics (pattern as for
// http.ServeMux, e.g. "GET /v1/status").
type metricsRoute struct {
	pattern string
	handler http.Handler
}

// serveMetrics serves /metrics, /healthz and, when ready is set, /readyz of a
// role without an HTTP API on addr until stop, and routes. /readyz answers 200
// {"status":"ready"}, or 503 with a JSON error naming what is not ready.
func serveMetrics(addr string, reg *prometheus.Registry, ready readyCheck, log *slog.Logger, routes ...metricsRoute) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	if ready != nil {
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), serving.CheckTimeout)
			defer cancel()
			if err := ready(ctx); err != nil {
				serving.WriteError(w, http.StatusServiceUnavailable, serving.Error{Code: serving.CodeNotReady, Message: err.Error()})
				return
			}
			serving.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		})
	}
	for _, r := range routes {
		mux.Handle(r.pattern, r.handler)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("metrics listening", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}
