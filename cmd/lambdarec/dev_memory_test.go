package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/serving"
)

// dev bounds the speed layer and the batch runs for one process where the
// configuration leaves them at their defaults, and keeps what it sets.
func TestDevMemoryDefaults(t *testing.T) {
	cfg, err := devConfig(config.Default(), devOptions{dataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Speed.MaxStateBytes != config.DevSpeedMaxStateBytes || cfg.Speed.MaxSessions != config.DevSpeedMaxSessions ||
		cfg.Batch.MaxMemory != config.DevBatchMaxMemory || cfg.Dev.MaxMemory != config.DefaultDevMaxMemory {
		t.Fatalf("dev's bounds: speed %d bytes, %d sessions; batch %d; dev.max_memory %d",
			cfg.Speed.MaxStateBytes, cfg.Speed.MaxSessions, cfg.Batch.MaxMemory, cfg.Dev.MaxMemory)
	}
	set := config.Default()
	set.Speed.MaxStateBytes, set.Speed.MaxSessions, set.Batch.MaxMemory = 1<<30, 50_000, 2<<30
	cfg, err = devConfig(set, devOptions{dataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Speed.MaxStateBytes != 1<<30 || cfg.Speed.MaxSessions != 50_000 || cfg.Batch.MaxMemory != 2<<30 {
		t.Fatalf("set bounds changed: speed %d bytes, %d sessions; batch %d", cfg.Speed.MaxStateBytes, cfg.Speed.MaxSessions, cfg.Batch.MaxMemory)
	}
}

// A bound the configuration file or the environment writes wins in dev even
// when it is exactly the production default (dev replaced such a value by its
// own bound before config.Config.IsSet); one left unwritten gets dev's bound.
func TestDevKeepsWrittenDefaults(t *testing.T) {
	d := config.Default()
	path := t.TempDir() + "/c.yml"
	body := fmt.Sprintf("speed:\n  max_state_bytes: %d\n  max_view_delay: %s\nbatch:\n  max_memory: %d\n",
		d.Speed.MaxStateBytes, d.Speed.MaxViewDelay, d.Batch.MaxMemory)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		path    string
		env     []string
		state   int64
		session int
		batch   int64
		delay   time.Duration
	}{
		{"unset", "", nil, config.DevSpeedMaxStateBytes, config.DevSpeedMaxSessions, config.DevBatchMaxMemory, devMaxViewDelay},
		{"file", path, nil, d.Speed.MaxStateBytes, config.DevSpeedMaxSessions, d.Batch.MaxMemory, d.Speed.MaxViewDelay},
		{"env", "", []string{"LAMBDAREC_SPEED_MAX_SESSIONS=" + strconv.Itoa(d.Speed.MaxSessions), "LAMBDAREC_KAFKA_FETCH_MAX_BYTES=0"},
			config.DevSpeedMaxStateBytes, d.Speed.MaxSessions, config.DevBatchMaxMemory, devMaxViewDelay},
	} {
		in, err := config.Load(c.path, c.env)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := devConfig(in, devOptions{dataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		// kafka.fetch_max_bytes written as 0 (franz-go's default) in "env".
		wantFetch := int64(config.DevFetchMaxBytes)
		if c.name == "env" {
			wantFetch = 0
		}
		if cfg.Kafka.FetchMaxBytes != wantFetch || cfg.Kafka.FetchMaxPartitionBytes != config.DevFetchMaxPartitionBytes {
			t.Errorf("%s: fetch bounds %d / %d, want %d / %d", c.name, cfg.Kafka.FetchMaxBytes, cfg.Kafka.FetchMaxPartitionBytes, wantFetch, config.DevFetchMaxPartitionBytes)
		}
		if cfg.Speed.MaxStateBytes != c.state || cfg.Speed.MaxSessions != c.session || cfg.Batch.MaxMemory != c.batch || cfg.Speed.MaxViewDelay != c.delay {
			t.Errorf("%s: speed %d bytes, %d sessions, max_view_delay %s; batch %d; want %d, %d, %s; %d", c.name,
				cfg.Speed.MaxStateBytes, cfg.Speed.MaxSessions, cfg.Speed.MaxViewDelay, cfg.Batch.MaxMemory, c.state, c.session, c.delay, c.batch)
		}
	}
}

// When the memory store evicts views or the speed layer sheds sessions,
// /v1/status shows it (degraded, with the reason code), the metrics count
// it and a log line says so once.
func TestDevBoundsFaults(t *testing.T) {
	ctx := context.Background()
	mem := store.NewMemory(store.MemorySessionBytes(1 << 20))
	var shed atomic.Uint64
	var shedAt atomic.Int64
	last := func() (uint64, time.Time) {
		if ns := shedAt.Load(); ns != 0 {
			return shed.Load(), time.Unix(0, ns)
		}
		return shed.Load(), time.Time{}
	}
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	b, err := newDevBounds(mem, last, reg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := b.faults(ctx); len(f) != 0 {
		t.Fatalf("faults before any bound bit: %+v", f)
	}
	items := make([]store.Scored, 20)
	for i := range items {
		items[i] = store.Scored{Item: fmt.Sprintf("item%05d", i), Score: 1}
	}
	for i := range 3000 {
		if err := mem.UpsertSession(ctx, store.SessionView{SessionID: fmt.Sprintf("s%05d", i), Items: items}); err != nil {
			t.Fatal(err)
		}
	}
	shed.Store(7)
	shedAt.Store(time.Now().UnixNano())
	f, err := b.faults(ctx)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[string]serving.Fault{}
	for _, x := range f {
		codes[x.Code] = x
	}
	if x, ok := codes[FaultCodeViewStoreFull]; !ok || x.Layer != serving.StoreLayer || x.State != serving.StateDegraded {
		t.Fatalf("no degraded %s fault on %s: %+v", FaultCodeViewStoreFull, serving.StoreLayer, f)
	}
	if x, ok := codes[FaultCodeSpeedStateFull]; !ok || x.Layer != "speed" || x.State != serving.StateDegraded || x.Details["evicted_or_dropped"] != uint64(7) {
		t.Fatalf("no degraded %s fault on speed: %+v", FaultCodeSpeedStateFull, f)
	}
	ev := mem.Evictions().Sessions
	if got := counterValue(t, reg, "lambdarec_store_memory_evicted_sessions_total"); ev == 0 || got != float64(ev) {
		t.Fatalf("lambdarec_store_memory_evicted_sessions_total = %v, the store evicted %d", got, ev)
	}
	if _, used, limit := mem.SessionUsage(); used > limit {
		t.Fatalf("%d bytes of views held, bound %d", used, limit)
	}
	b.faults(ctx)
	if n := strings.Count(logs.String(), "speed layer evicting sessions"); n != 1 {
		t.Fatalf("%d log lines about the speed layer's evictions, want 1:\n%s", n, logs.String())
	}
}

// counterValue returns the value of the registered counter named name.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("%s is not registered", name)
	return 0
}
