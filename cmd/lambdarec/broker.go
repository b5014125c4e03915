package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lambdarec/lambdarec/internal/broker"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/serving"
)

func init() {
	register("broker", command{
		summary: "run the embedded Kafka-protocol broker (kfake) on a fixed port",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			fs.StringVar(&cfg.Broker.Addr, "addr", cfg.Broker.Addr, "listen address")
			fs.StringVar(&cfg.Broker.DataDir, "data-dir", cfg.Broker.DataDir, "persist the log in this directory (default: in memory)")
			fs.IntVar(&cfg.Kafka.Partitions, "partitions", cfg.Kafka.Partitions, "partitions of the topics it creates")
			return func(ctx context.Context, e *env) error {
				b, err := broker.New(embeddedBroker(e.cfg, nil), e.log.With("component", "broker"))
				if err != nil {
					return err
				}
				return b.Run(ctx)
			}
		},
		description: "Runs kfake, an in-process Kafka-protocol broker, on a fixed port: for development and tests, not for production (it keeps data in memory). Each partition keeps broker.retention_bytes (default 64 MiB) of records the archive and the speed layer have consumed; one holding twice that they have not refuses produce requests (retriable) until they catch up.",
	})
}

// embeddedBroker is the configuration of the embedded broker of `lambdarec
// broker` and `lambdarec dev`: its retention waits for the archive's and the
// speed layer's consumer groups. reg may be nil.
func embeddedBroker(cfg config.Config, reg prometheus.Registerer) broker.Config {
	return broker.Config{
		Addr:           cfg.Broker.Addr,
		DataDir:        cfg.Broker.DataDir,
		Topics:         []string{cfg.Kafka.Topic, cfg.Kafka.DLQTopic},
		Partitions:     cfg.Kafka.Partitions,
		RetentionBytes: cfg.Broker.RetentionBytes,
		Protect:        []string{cfg.Archive.Group, cfg.Speed.Group},
		Registerer:     reg,
	}
}

// FaultCodeBrokerFull is the /v1/status code of a partition of the embedded
// broker that refuses produce requests until the archive and the speed
// layer consume it.
const FaultCodeBrokerFull = "broker_full"

// brokerFaults reports each full partition of the embedded broker as a
// fault of the layer "broker", degraded: nothing is lost, producers are held
// back (the collector answers 503) until the consumers catch up.
func brokerFaults(b *broker.Broker) serving.FaultFunc {
	return func(context.Context) ([]serving.Fault, error) {
		var out []serving.Fault
		for _, f := range b.Full() {
			out = append(out, serving.Fault{Layer: "broker", Code: FaultCodeBrokerFull, State: serving.StateDegraded,
				Message: fmt.Sprintf("partition %s/%d holds %d bytes, more than the %d allowed (twice broker.retention_bytes) of records the archive or the speed layer has not consumed: it refuses produce requests until they catch up",
					f.Topic, f.Partition, f.Bytes, f.Limit),
				Details: map[string]any{"topic": f.Topic, "partition": f.Partition, "bytes": f.Bytes, "limit": f.Limit,
					"protected_offset": f.ProtectedOffset, "since": f.Since}})
		}
		return out, nil
	}
}
