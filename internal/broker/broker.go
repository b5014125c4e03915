// Package broker owns the embedded Kafka-protocol broker (franz-go's kfake)
// that `lambdarec broker` and `lambdarec dev` run on a fixed loopback port, so
// that the whole platform works with zero setup. Any Kafka client can use it.
// It also owns the bound on what the broker keeps (retention.go): records
// the archive has consumed are deleted past Config.RetentionBytes per
// partition (those the speed layer would replay from only when needed, and
// said so), records it has not are never deleted, and a partition holding
// twice the bound refuses produce requests until it catches up.
package broker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
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
	// RetentionBytes bounds each partition of Topics (retention.go): the
	// oldest records past it that every group of Protect has consumed are
	// deleted, and a partition holding more than twice it refuses produce
	// requests until they have. 0 keeps every record (kfake's default).
	RetentionBytes int64
	// Protect are the consumer groups whose committed offsets retention
	// never deletes past (the archive's).
	Protect []string
	// Horizon are the consumer groups whose committed offsets retention
	// deletes past only to keep a partition from being full, and reports
	// (the speed layer's replay horizon).
	Horizon []string
	// Registerer registers the broker's metrics when set.
	Registerer prometheus.Registerer
}

// Broker is a running embedded broker.
type Broker struct {
	cfg       Config
	cluster   *kfake.Cluster
	log       *slog.Logger
	retention *retention // nil without RetentionBytes
	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
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
	if cfg.RetentionBytes < 0 {
		return nil, fmt.Errorf("broker retention bytes must not be negative, got %d", cfg.RetentionBytes)
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
	if cfg.RetentionBytes > 0 {
		// Deleted records free memory or disk a whole segment at a time:
		// segments of a quarter of the bound (kfake's default is 100 MiB).
		seg := min(max(cfg.RetentionBytes/4, 1<<20), 100<<20)
		opts = append(opts, kfake.BrokerConfigs(map[string]string{"log.segment.bytes": strconv.FormatInt(seg, 10)}))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker on %s: %w", cfg.Addr, err)
	}
	b := &Broker{cfg: cfg, cluster: c, log: log, stop: func() {}}
	for _, t := range cfg.Topics {
		if c.TopicInfo(t) != nil {
			continue // restored from DataDir
		}
		if err := c.CreateTopic(t, int32(cfg.Partitions), nil); err != nil {
			c.Close()
			return nil, fmt.Errorf("create topic %s: %w", t, err)
		}
	}
	if cfg.RetentionBytes > 0 {
		r, err := newRetention(c, cfg, log)
		if err != nil {
			c.Close()
			return nil, err
		}
		ctx, stop := context.WithCancel(context.Background())
		b.retention, b.stop, b.done = r, stop, make(chan struct{})
		go func() {
			defer close(b.done)
			r.run(ctx)
		}()
	}
	log.Info("embedded broker listening", "addr", b.Addr(), "data_dir", cfg.DataDir, "topics", cfg.Topics, "partitions", cfg.Partitions,
		"retention_bytes", cfg.RetentionBytes, "protect", cfg.Protect, "horizon", cfg.Horizon)
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

// Full returns the partitions that refuse produce requests now because
// their protected groups lag (retention.go); none without RetentionBytes.
func (b *Broker) Full() []FullPartition {
	if b.retention == nil {
		return nil
	}
	return b.retention.Full()
}

// Trimmed returns the partitions whose log starts past the offset a Horizon
// group committed (retention.go); none without RetentionBytes.
func (b *Broker) Trimmed() []TrimmedPartition {
	if b.retention == nil {
		return nil
	}
	return b.retention.Trimmed()
}

// Unconsumed returns, by topic, the records retention deleted from
// partitions no Protect group had committed on (retention.go); none
// without RetentionBytes.
func (b *Broker) Unconsumed() []UnconsumedDeletion {
	if b.retention == nil {
		return nil
	}
	return b.retention.Unconsumed()
}

// Close stops the broker. It is safe to call more than once.
func (b *Broker) Close() {
	b.closeOnce.Do(func() {
		b.stop()
		if b.done != nil {
			<-b.done
		}
		b.cluster.Close()
	})
}
