package main

import (
	"context"
	"flag"
	"fmt"
	"time"

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
		description: "Runs kfake, an in-process Kafka-protocol broker, on a fixed port: for development and tests, not for production (it keeps data in memory). Each partition keeps broker.retention_bytes (default 64 MiB) of records the archive has consumed (and, while it can, those from the speed layer's replay horizon); one holding twice that refuses produce requests (retriable) until the archive catches up.",
	})
}

// embeddedBroker is the configuration of the embedded broker of `lambdarec
// broker` and `lambdarec dev`: its retention waits for the archive's
// consumer group, and keeps the speed layer's replay horizon while it can.
// reg may be nil.
func embeddedBroker(cfg config.Config, reg prometheus.Registerer) broker.Config {
	return broker.Config{
		Addr:           cfg.Broker.Addr,
		DataDir:        cfg.Broker.DataDir,
		Topics:         []string{cfg.Kafka.Topic, cfg.Kafka.DLQTopic},
		Partitions:     cfg.Kafka.Partitions,
		RetentionBytes: cfg.Broker.RetentionBytes,
		Protect:        []string{cfg.Archive.Group},
		Horizon:        []string{cfg.Speed.Group},
		Registerer:     reg,
	}
}

// The /v1/status codes of the embedded broker's retention.
const (
	// FaultCodeBrokerFull: a partition of the embedded broker refuses
	// produce requests until the archive consumes it. Layer "broker",
	// degraded.
	FaultCodeBrokerFull = "broker_full"
	// FaultCodeHorizonTrimmed: the embedded broker deleted records before
	// the speed layer's replay horizon to keep accepting events. Layer
	// "speed", degraded.
	FaultCodeHorizonTrimmed = "replay_horizon_trimmed"
	// FaultCodeDeletedUnconsumed: the embedded broker's retention deleted
	// records no protecting group had consumed (the dead-letter topic's
	// oldest letters) within unconsumedShownFor. Layer "broker", degraded.
	FaultCodeDeletedUnconsumed = "records_deleted_unconsumed"
)

// unconsumedShownFor is how long /v1/status shows a deletion of unconsumed
// records (FaultCodeDeletedUnconsumed) after the last one; the metric
// lambdarec_broker_retention_unconsumed_deleted_records_total counts them
// all.
const unconsumedShownFor = 10 * time.Minute

// brokerFaults reports each full partition of the embedded broker as a
// fault of the layer "broker", degraded: nothing is lost, producers are held
// back (the collector answers 503) until the archive catches up; and each
// partition whose log starts past the speed layer's replay horizon as a
// fault of the layer "speed", degraded.
func brokerFaults(b *broker.Broker) serving.FaultFunc {
	return func(context.Context) ([]serving.Fault, error) {
		var out []serving.Fault
		for _, u := range b.Unconsumed() {
			if since := time.Since(u.Last); since < unconsumedShownFor {
				out = append(out, serving.Fault{Layer: "broker", Code: FaultCodeDeletedUnconsumed, State: serving.StateDegraded,
					Message: fmt.Sprintf("the embedded broker deleted %d records of %s that no consumer of lambdarec had read (the last %.0fs ago), its oldest past broker.retention_bytes: read dead letters sooner or raise the bound",
						u.Records, u.Topic, since.Seconds()),
					Details: map[string]any{"topic": u.Topic, "records": u.Records, "last": u.Last}})
			}
		}
		for _, f := range b.Full() {
			out = append(out, serving.Fault{Layer: "broker", Code: FaultCodeBrokerFull, State: serving.StateDegraded,
				Message: fmt.Sprintf("partition %s/%d holds %d bytes, more than the %d allowed (twice broker.retention_bytes) of records the archive has not consumed: it refuses produce requests until the archive catches up",
					f.Topic, f.Partition, f.Bytes, f.Limit),
				Details: map[string]any{"topic": f.Topic, "partition": f.Partition, "bytes": f.Bytes, "limit": f.Limit,
					"protected_offset": f.ProtectedOffset, "since": f.Since}})
		}
		for _, f := range b.Trimmed() {
			out = append(out, serving.Fault{Layer: "speed", Code: FaultCodeHorizonTrimmed, State: serving.StateDegraded,
				Message: fmt.Sprintf("the embedded broker deleted records of %s/%d before the replay horizon group %s committed (offset %d; the log now starts at %d) to keep accepting events: a restart or rebalance of the speed layer would rebuild those sessions without their earlier records",
					f.Topic, f.Partition, f.Group, f.Committed, f.LogStart),
				Details: map[string]any{"topic": f.Topic, "partition": f.Partition, "group": f.Group, "committed": f.Committed,
					"log_start": f.LogStart, "since": f.Since}})
		}
		return out, nil
	}
}
