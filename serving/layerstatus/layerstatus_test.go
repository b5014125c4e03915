package layerstatus

import (
	"context"
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
