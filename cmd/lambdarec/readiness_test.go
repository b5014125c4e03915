package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/store"
)

// The role readiness checks pass with their dependency up and name it when
// it is down: the broker stopped, the catalog without the events table, the
// store closed.
func TestReadinessChecks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	br := startBroker(t, 2, "events")
	cl, err := kafka.NewClient([]string{br.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkaTopicReady(cl, "events")(ctx); err != nil {
		t.Fatalf("kafka up: %v", err)
	}
	if err := kafkaTopicReady(cl, "nope")(ctx); err == nil || !strings.Contains(err.Error(), "topic nope") {
		t.Fatalf("missing topic: %v", err)
	}
	br.Close()
	sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
	err = kafkaTopicReady(cl, "events")(sctx)
	scancel()
	if err == nil || !strings.HasPrefix(err.Error(), "kafka: ") {
		t.Fatalf("kafka down: %v", err)
	}

	dir := t.TempDir()
	icfg := config.Default().Iceberg
	icfg.CatalogURI, icfg.Warehouse = "file:"+dir+"/catalog.db", "file://"+dir+"/warehouse"
	lake, err := lakehouse.Open(ctx, icfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Close()
	if err := icebergReady(lake)(ctx); err == nil || !strings.HasPrefix(err.Error(), "iceberg: ") {
		t.Fatalf("no events table yet: %v", err)
	}
	if _, err := lake.EnsureEvents(ctx); err != nil {
		t.Fatal(err)
	}
	if err := icebergReady(lake)(ctx); err != nil {
		t.Fatalf("events table there: %v", err)
	}

	st := store.NewMemory()
	if err := storeReady(st)(ctx); err != nil {
		t.Fatalf("store up: %v", err)
	}
	st.Close()
	if err := allReady(storeReady(st), func(context.Context) error { return nil })(ctx); err == nil || !strings.Contains(err.Error(), "serving store: ") {
		t.Fatalf("store closed: %v", err)
	}
}
