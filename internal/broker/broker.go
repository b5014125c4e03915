// Package broker owns the embedded Kafka-protocol broker (franz-go's kfake)
// that `lambdarec broker` and `lambdarec dev` run on a fixed loopback port, so
// that the whole platform works with zero setup. Any Kafka client can use it.
package broker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Config configures the embedded broker.
type Config struct {
	// Addr is host:port to listen on; port 0 picks a free one.
	Addr string
	// DataDir persists the log and offsets when set; empty keeps them in memory.
	DataDir string
	// Topics are created with Partitions partitions if they do not exist.
	Topics     []string
	Partitions int
}

// Broker is a running embedded broker.
type Broker struct {
	cfg     Config
	cluster *kfake.Cluster
	log     *slog.Logger
}

// New starts the broker listening on cfg.Addr and creates cfg.Topics.
func New(cfg Config, log *slog.Logger) (*Broker, error) {
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("broker address %q: %w", cfg.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("broker address %q: bad port", cfg.Addr)
	}
	if cfg.Partitions < 1 {
		return nil, fmt.Errorf("broker partitions must be at least 1, got %d", cfg.Partitions)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port), // 0 picks a free port
		kfake.ClusterID("lambdarec"),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			// kfake always asks for 127.0.0.1; keep its port, use our host.
			_, p, _ := net.SplitHostPort(address)
			return net.Listen(network, net.JoinHostPort(host, p))
		}),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker on %s: %w", cfg.Addr, err)
	}
	b := &Broker{cfg: cfg, cluster: c, log: log}
	for _, t := range cfg.Topics {
		if c.TopicInfo(t) != nil {
			continue // restored from DataDir
		}
		if err := c.CreateTopic(t, int32(cfg.Partitions), nil); err != nil {
			c.Close()
			return nil, fmt.Errorf("create topic %s: %w", t, err)
		}
	}
	log.Info("embedded broker listening", "addr", b.Addr(), "data_dir", cfg.DataDir, "topics", cfg.Topics, "partitions", cfg.Partitions)
	return b, nil
}

// Addr returns the address clients connect to.
func (b *Broker) Addr() string { return b.cluster.ListenAddrs()[0] }

// Cluster exposes the underlying kfake cluster, for tests that inject faults.
func (b *Broker) Cluster() *kfake.Cluster { return b.cluster }

// Run serves until ctx ends, then stops the broker (flushing DataDir).
func (b *Broker) Run(ctx context.Context) error {
	<-ctx.Done()
	b.Close()
	return nil
}

// Close stops the broker. It is safe to call more than once.
func (b *Broker) Close() {
	b.cluster.Close()
}
