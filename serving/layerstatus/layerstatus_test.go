package layerstatus

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/broker"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/serving"
)

// Against a real broker and catalog with records but nothing archived, no
// group position and no batch: the archive's lag is every record, the speed
// layer's is an upper bound with a no_position fault, the batch has not run.
func TestLayersBeforeAnyProgress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	br, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Topics: []string{"events"}, Partitions: 2}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	cl, err := kafka.NewClient([]string{br.Addr()}, kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 7 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte{byte(i)}, Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	icfg := config.Default().Iceberg
	icfg.CatalogURI, icfg.Warehouse = "file:"+filepath.Join(dir, "catalog.db"), "file://"+filepath.Join(dir, "warehouse")
	lake, err := lakehouse.Open(ctx, icfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Close()
	adm := kadm.NewClient(cl)

	a, err := Archive(lake, adm, "events").Status(ctx)
	if err != nil || a.LagRecords != 7 || a.LagSeconds != -1 || !a.LastUpdate.IsZero() {
		t.Errorf("archive before any commit: %+v %v", a, err)
	}
	s, err := Speed(adm, "lambdarec-speed", "events").Status(ctx)
	if err != nil || s.LagRecords != 7 || !s.LagUpperBound || len(s.Faults) != 1 || s.Faults[0].Code != "no_position" || s.Faults[0].State != serving.StateDegraded {
		t.Errorf("speed without a committed position: %+v %v", s, err)
	}
	b, err := Batch(lake, adm, "events").Status(ctx)
	if err != nil || b.Layer != serving.BatchLayer || !b.LastUpdate.IsZero() {
		t.Errorf("batch before any run: %+v %v", b, err)
	}
}

// serve's speed entry reports the newest shed stamp of the group's commits
// within the window, naming the partitions that carry one; a stale stamp or
// a commit without one reports nothing.
func TestShedFaultFromCommits(t *testing.T) {
	now := time.Now()
	stamp := func(n int, ago time.Duration) string {
		return fmt.Sprintf("lambdarec-speed views-written=10 shed=%d@%d", n, now.Add(-ago).UnixMilli())
	}
	f, ok := shedFault(map[int32]string{0: stamp(7, 20*time.Second), 1: "lambdarec-speed views-written=3", 2: stamp(9, 5*time.Second), 3: stamp(99, 2*time.Minute)}, now)
	if !ok || f.Code != serving.FaultSpeedStateFull || f.State != serving.StateDegraded || f.Details["evicted_or_dropped"] != uint64(9) {
		t.Fatalf("fault %+v, %v", f, ok)
	}
	if ps, _ := f.Details["partitions"].([]int32); len(ps) != 2 || ps[0] != 0 || ps[1] != 2 {
		t.Errorf("partitions %v, want [0 2]", f.Details["partitions"])
	}
	if f, ok := shedFault(map[int32]string{0: stamp(99, 2*time.Minute), 1: "lambdarec-speed views-written=3"}, now); ok {
		t.Errorf("stale stamp reported: %+v", f)
	}
}
