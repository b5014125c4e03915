// Command run starts lambdarec's production topology on this machine (see
// package infra/local) and keeps it up until interrupted:
//
//	go tool task topology
//	go run ./infra/local/run -bin bin/lambdarec -clickhouse clickhouse://127.0.0.1:9000/default
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/lambdarec/lambdarec/infra/local"
)

func main() {
	bin := flag.String("bin", "bin/lambdarec", "the lambdarec binary")
	configDir := flag.String("config-dir", "infra/local", "directory of the roles' YAML files")
	dir := flag.String("dir", "lambdarec-data/topology", "services' data and every process's log")
	ch := flag.String("clickhouse", os.Getenv("LAMBDAREC_CLICKHOUSE_DSN"), "ClickHouse DSN (.ci/clickhouse.sh prints one)")
	kafka := flag.String("kafka", os.Getenv(local.EnvKafka), "a real Kafka broker host:port (empty: lambdarec broker)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "topology:", err)
		os.Exit(1)
	}
	topo, err := local.Start(ctx, local.Options{
		Bin: abs(*bin), ConfigDir: abs(*configDir), Dir: abs(*dir),
		ClickHouseDSN: *ch, Kafka: *kafka, RunID: "local", Log: log,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "topology:", err)
		os.Exit(1)
	}
	log.Info("topology up", "serve", local.ServeURLs, "kafka", topo.Brokers, "topic", topo.Topic,
		"clickhouse", topo.ClickHouseDSN, "logs", filepath.Join(topo.Dir(), "log"))
	<-ctx.Done()
	if err := topo.Close(); err != nil {
		log.Error("topology stop", "err", err)
		os.Exit(1)
	}
}
