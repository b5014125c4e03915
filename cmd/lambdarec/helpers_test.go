package main

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/lambdarec/lambdarec/internal/broker"
)

// startBroker starts an embedded broker on a free port with topics, closed
// when the test ends.
func startBroker(t *testing.T, partitions int, topics ...string) *broker.Broker {
	t.Helper()
	br, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Topics: topics, Partitions: partitions}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(br.Close)
	return br
}

// isolateIceberg points the commands run by the test at a catalog and
// warehouse of its own, out of the source tree.
func isolateIceberg(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("LAMBDAREC_ICEBERG_CATALOG_URI", "file:"+filepath.Join(dir, "catalog.db"))
	t.Setenv("LAMBDAREC_ICEBERG_WAREHOUSE", "file://"+filepath.Join(dir, "warehouse"))
}
