package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lambdarec/lambdarec/batch/archive"
	"github.com/lambdarec/lambdarec/internal/broker"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/serving"
	"github.com/lambdarec/lambdarec/serving/collector"
	"github.com/lambdarec/lambdarec/serving/layerstatus"
	"github.com/lambdarec/lambdarec/speed"
)

// TestBrokerLosesItsData runs the archive and the speed layer against the
// embedded broker, restarts the broker on the same port without its data
// (the topics are created again, with new IDs and offsets from 0), and posts
// new events that the collector answers 202. Neither layer may skip them
// silently: the archive must not take the new log's records for ones it
// already holds, nor append them after the old offsets. Both stop the
// partitions and say so — faults naming topic, partition, stored and broker
// offsets, readiness false, a gauge, the serving status — and their logs stay
// bounded (no line per fetch error).
func TestBrokerLosesItsData(t *testing.T) {
	const parts = 3
	addr := freeAddr(t)
	startAt := func() *broker.Broker {
		br, err := broker.New(broker.Config{Addr: addr, Topics: []string{"events", "events.dlq"}, Partitions: parts}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		return br
	}
	br := startAt()
	defer func() { br.Close() }()

	dir := t.TempDir()
	cfg := config.Default()
	cfg.Kafka.Brokers = []string{addr}
	cfg.Kafka.Partitions = parts
	cfg.Iceberg.CatalogURI = "file:" + filepath.Join(dir, "catalog.db")
	cfg.Iceberg.Warehouse = "file://" + filepath.Join(dir, "warehouse")
	cfg.Archive.MaxRecords = 200
	cfg.Archive.MaxInterval = 100 * time.Millisecond
	cfg.Archive.MetricsAddr = ""

	var logs serveTestBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	lake, err := lakehouse.Open(ctx, cfg.Iceberg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Close()
	reg := prometheus.NewRegistry()
	arch, err := archive.New(cfg, archive.Deps{Log: log.With("component", "archive"), Registerer: reg, Lake: lake})
	if err != nil {
		t.Fatal(err)
	}
	sc := speed.FromConfig(&cfg)
	sc.Params = &cfg.Model
	layer, err := speed.New(sc, speed.Deps{Views: store.NewMemory(), Log: log.With("component", "speed")})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { done <- arch.Run(ctx) }()
	go func() { done <- layer.Run(ctx) }()

	post := func(srv *httptest.Server, from, n int) (accepted int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			body := fmt.Sprintf(`{"event_id":"e%d","timestamp":%q,"user_id":"u%d","session_id":"s%d","product_click":{"item_id":"i%d","category":"c"}}`,
				i, time.Now().UTC().Format(time.RFC3339Nano), i%50, i%40, i%30)
			resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				accepted++
			}
		}
		return accepted
	}
	newCollector := func() *httptest.Server {
		cl, err := kafka.NewClient(cfg.Kafka.Brokers)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		c, err := collector.New(collector.Config{Topic: "events", ProduceTimeout: 5 * time.Second}, collector.Deps{Client: cl})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(c)
		t.Cleanup(srv.Close)
		return srv
	}
	archived := func() int64 { // rows in the table, from its summary
		tbl, err := lake.LoadTable(context.Background(), lakehouse.EventsTable)
		if err != nil || tbl.CurrentSnapshot() == nil || tbl.CurrentSnapshot().Summary == nil {
			return 0
		}
		n, _ := strconv.ParseInt(tbl.CurrentSnapshot().Summary.Properties["total-records"], 10, 64)
		return n
	}

	// Before: 300 events accepted, archived and consumed.
	first := newCollector()
	if n := post(first, 0, 300); n != 300 {
		t.Fatalf("accepted %d of 300 events before the loss", n)
	}
	waitFor(t, time.Minute, "300 events archived", func() bool { return archived() == 300 })
	waitFor(t, time.Minute, "speed ready at 300 events", func() bool {
		sum := int64(0)
		for _, next := range layer.Positions() {
			sum += next
		}
		return layer.Ready() && sum == 300
	})
	if !arch.Ready() || len(arch.Faults()) > 0 || len(layer.Faults()) > 0 {
		t.Fatalf("before the loss: archive ready %v faults %v, speed faults %v", arch.Ready(), arch.Faults(), layer.Faults())
	}

	// The broker loses its data: same port, empty log, new topic IDs.
	br.Close()
	linesBefore := logs.lines()
	lossAt := time.Now()
	br = startAt()
	second := newCollector() // a collector (re)started after the loss
	accepted := post(second, 1000, 200)
	if accepted != 200 {
		t.Fatalf("accepted %d of 200 events after the loss", accepted)
	}
	post(first, 2000, 5) // the old collector's client may refuse the recreated topic (503): either is fine

	waitFor(t, 90*time.Second, "both layers to stop the partitions and say so", func() bool {
		return len(arch.Faults()) == parts && len(layer.Faults()) > 0 && !arch.Ready() && !layer.Ready()
	})
	// Let them run on the new log for a while: nothing may change.
	time.Sleep(10 * time.Second)

	if got := archived(); got != 300 {
		t.Fatalf("table holds %d rows after the loss, want the 300 of the old log: records of the new log were archived as a continuation of the old one", got)
	}
	for _, f := range append(arch.Faults(), layer.Faults()...) {
		if f.Topic != "events" || f.Partition < 0 || f.Partition >= parts || f.StoredOffset < 0 || f.BrokerEndOffset < 0 {
			t.Errorf("fault does not name topic, partition, stored and broker offsets: %+v", f)
		}
		if f.Reason != kafka.FaultTopicRecreated && f.Reason != kafka.FaultLogTruncated {
			t.Errorf("fault reason %q, want %s or %s: %+v", f.Reason, kafka.FaultTopicRecreated, kafka.FaultLogTruncated, f)
		}
	}
	if !arch.Ready() && layer.Ready() {
		t.Fatal("speed ready with a stopped partition")
	}
	gauges := 0
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "lambdarec_archive_partition_faults" {
			for _, m := range mf.GetMetric() {
				if m.GetGauge().GetValue() == 1 {
					gauges++
				}
			}
		}
	}
	if gauges != parts {
		t.Fatalf("lambdarec_archive_partition_faults: %d partitions at 1, want %d", gauges, parts)
	}

	// What serve's /v1/status says, read from the table and the broker.
	adminCl, err := kafka.NewClient(cfg.Kafka.Brokers)
	if err != nil {
		t.Fatal(err)
	}
	defer adminCl.Close()
	adm := kadm.NewClient(adminCl)
	st, err := layerstatus.Archive(lake, adm, "events").Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	faults, _ := st.Details["offset_faults"].([]kafka.LogFault)
	regressions := 0
	for _, f := range st.Faults {
		if f.Code == layerstatus.FaultOffsetRegression && f.State == serving.StateDown {
			regressions++
		}
	}
	if len(faults) != parts || regressions != parts {
		t.Fatalf("archive status with %d offset faults and %d down offset_regression faults, want %d of each: %+v", len(faults), regressions, parts, st)
	}
	// The speed layer's own stopped partitions reach its status too.
	sst, err := layerstatus.SpeedLayer(layer, sc.Group).Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	speedDown := 0
	for _, f := range sst.Faults {
		if f.Code == layerstatus.FaultOffsetRegression && f.State == serving.StateDown {
			speedDown++
		}
	}
	if speedDown == 0 || speedDown != len(layer.Faults()) {
		t.Fatalf("speed status has %d down offset_regression faults, the layer %d stopped partitions: %+v", speedDown, len(layer.Faults()), sst)
	}

	// Bounded, loud logs: one ERROR per stopped partition and minute, no
	// line per fetch error, and never a silent "already archived" skip.
	after := logs.lines()[len(linesBefore):]
	elapsed := time.Since(lossAt)
	stopped, skipped := 0, 0
	for _, l := range after {
		if strings.Contains(l, "partition stopped") {
			stopped++
		}
		if strings.Contains(l, "already archived") {
			skipped++
		}
	}
	maxStopped := 2 * parts * (1 + int(elapsed/time.Minute)) // archive + speed
	if stopped == 0 || stopped > maxStopped {
		t.Errorf("%d 'partition stopped' ERROR lines in %s, want 1..%d", stopped, elapsed.Round(time.Second), maxStopped)
	}
	if skipped > 0 {
		t.Errorf("the archive skipped records of the new log as already archived (%d lines)", skipped)
	}
	// Without backoff and the limit, this was ~20,000 lines a second.
	if limit := int(elapsed/time.Second)*20 + 50; len(after) > limit {
		t.Errorf("%d log lines in %s since the loss, want at most %d:\n%s", len(after), elapsed.Round(time.Second), limit, tail(strings.Join(after, "\n"), 4000))
	}
	t.Logf("after the loss: %d events accepted, %d log lines in %s (%d 'partition stopped'); archive faults %v; speed faults %v",
		accepted, len(after), elapsed.Round(time.Second), stopped, arch.Faults(), layer.Faults())

	cancel()
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("layer ended with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a layer did not stop")
		}
	}

	// An archiver started after the loss (the case that used to skip the
	// new log's records as "already archived") refuses at start.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	restarted, err := archive.New(cfg, archive.Deps{Log: log.With("component", "archive"), Lake: lake})
	if err != nil {
		t.Fatal(err)
	}
	done2 := make(chan error, 1)
	go func() { done2 <- restarted.Run(ctx2) }()
	waitFor(t, time.Minute, "the restarted archiver to stop the partitions", func() bool { return len(restarted.Faults()) == parts })
	time.Sleep(2 * time.Second)
	if restarted.Ready() || archived() != 300 {
		t.Fatalf("restarted archiver: ready %v, table rows %d (want not ready, 300)", restarted.Ready(), archived())
	}
	for _, l := range logs.lines() {
		if strings.Contains(l, "already archived") {
			t.Fatalf("restarted archiver skipped records: %s", l)
		}
	}
	cancel2()
	if err := <-done2; err != nil {
		t.Fatalf("restarted archiver: %v", err)
	}
}

// lines returns the complete lines written so far.
func (b *serveTestBuffer) lines() []string {
	s := b.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	} else {
		return nil
	}
	return strings.Split(s, "\n")
}
