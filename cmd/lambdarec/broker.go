package main

import (
	"context"
	"flag"

	"github.com/lambdarec/lambdarec/internal/broker"
	"github.com/lambdarec/lambdarec/internal/config"
)

func init() {
	register("broker", command{
		summary: "run the embedded Kafka-protocol broker (kfake) on a fixed port",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			fs.StringVar(&cfg.Broker.Addr, "addr", cfg.Broker.Addr, "listen address")
			fs.StringVar(&cfg.Broker.DataDir, "data-dir", cfg.Broker.DataDir, "persist the log in this directory (default: in memory)")
			fs.IntVar(&cfg.Kafka.Partitions, "partitions", cfg.Kafka.Partitions, "partitions of the topics it creates")
			return func(ctx context.Context, e *env) error {
				b, err := broker.New(broker.Config{
					Addr:       e.cfg.Broker.Addr,
					DataDir:    e.cfg.Broker.DataDir,
					Topics:     []string{e.cfg.Kafka.Topic, e.cfg.Kafka.DLQTopic},
					Partitions: e.cfg.Kafka.Partitions,
				}, e.log.With("component", "broker"))
				if err != nil {
					return err
				}
				return b.Run(ctx)
			}
		},
		description: "Runs kfake, an in-process Kafka-protocol broker, on a fixed port: for development and tests, not for production (it keeps data in memory).",
	})
}
