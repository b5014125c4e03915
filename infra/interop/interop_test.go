package interop

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/apache/iceberg-go"

	"github.com/lambdarec/lambdarec/batch"
	"github.com/lambdarec/lambdarec/batch/archive"
	"github.com/lambdarec/lambdarec/internal/broker"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/schemas"
)

// EnvPython names the Python interpreter that has PyIceberg installed
// (pyiceberg[sql-sqlite,pyarrow]); .ci/run sets it.
const EnvPython = "INTEROP_PYTHON"

// generated is the number of events the test writes.
const generated = 3000

// tables are the tables PyIceberg must read: the master dataset and the
// batch view.
var tables = []string{
	lakehouse.EventsTable, batch.TableBatchRuns, batch.TableCovisitation, batch.TablePopularity,
	batch.TableItemNeighbors, batch.TableUserRecs, batch.TablePopularItems,
}

// tableInfo is what each side reports of a table.
type tableInfo struct {
	Rows       int64            `json:"rows"`
	SnapshotID int64            `json:"snapshot_id"`
	Schema     []any            `json:"schema"`
	Distinct   map[string]int64 `json:"distinct"`
}

func TestPyIcebergReadsLambdarecTables(t *testing.T) {
	python := os.Getenv(EnvPython)
	if python == "" {
		t.Skip(EnvPython + " is not set: it names a Python with pyiceberg[sql-sqlite,pyarrow] (.ci/run sets it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}

	// A warehouse written by lambdarec: embedded broker, generated events,
	// the archive, one batch run.
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Iceberg.CatalogURI = "file:" + filepath.Join(dir, "catalog.db")
	cfg.Iceberg.Warehouse = "file://" + filepath.Join(dir, "warehouse")
	cfg.Archive.MaxInterval = 200 * time.Millisecond
	cfg.Archive.MetricsAddr = ""
	br, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Topics: []string{cfg.Kafka.Topic, cfg.Kafka.DLQTopic}, Partitions: 3}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close()
	cfg.Kafka.Brokers = []string{br.Addr()}

	g, err := generate.New(generate.Config{Seed: 7, Start: time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC), Count: generated, NumItems: 300, NumUsers: 200, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kafka.NewClient(cfg.Kafka.Brokers)
	if err != nil {
		t.Fatal(err)
	}
	st, err := g.Run(ctx, generate.NewKafkaSink(cl, cfg.Kafka.Topic))
	cl.Close()
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != generated || st.Malformed != 0 {
		t.Fatalf("generated %+v, want %d well-formed records", st.Counts, generated)
	}

	lake, err := lakehouse.Open(ctx, cfg.Iceberg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Close()
	arch, err := archive.New(cfg, archive.Deps{Log: log, Lake: lake})
	if err != nil {
		t.Fatal(err)
	}
	actx, stopArchive := context.WithCancel(ctx)
	archived := make(chan error, 1)
	go func() { archived <- arch.Run(actx) }()
	for deadline := time.Now().Add(2 * time.Minute); ; {
		n, err := countRows(ctx, lake, lakehouse.EventsTable)
		if err == nil && n == generated {
			break
		}
		select {
		case err := <-archived:
			t.Fatalf("archive stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("archive: %d of %d events in Iceberg after 2m (%v)", n, generated, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	stopArchive()
	if err := <-archived; err != nil {
		t.Fatalf("archive: %v", err)
	}

	runner, err := batch.New(batch.Config{Lake: lake, Topic: cfg.Kafka.Topic, Params: &cfg.Model, TopK: 10}, log)
	if err != nil {
		t.Fatal(err)
	}
	res, err := runner.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.View == nil {
		t.Fatal("batch run wrote no view")
	}

	// What iceberg-go sees, and what the batch says it wrote.
	want := map[string]tableInfo{}
	for _, name := range tables {
		tbl, err := lake.LoadTable(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info := tableInfo{Schema: schemaJSON(tbl.Schema().Fields()), Distinct: map[string]int64{}}
		if snap := tbl.CurrentSnapshot(); snap != nil {
			info.SnapshotID = snap.SnapshotID
		}
		if info.Rows, err = countRows(ctx, lake, name); err != nil {
			t.Fatal(err)
		}
		want[name] = info
	}
	expectRows := map[string]int64{
		lakehouse.EventsTable:    generated,
		batch.TableBatchRuns:     1,
		batch.TableItemNeighbors: int64(total(res.View.Neighbors)),
		batch.TableUserRecs:      int64(total(res.View.UserRecs)),
		batch.TablePopularItems:  int64(len(res.View.Popular)),
	}
	for name, n := range expectRows {
		if want[name].Rows != n {
			t.Errorf("iceberg-go reads %d rows of %s, the batch wrote %d", want[name].Rows, name, n)
		}
	}
	// The events table has the schema of the event contract (field ids
	// aside: the catalog assigns those of nested fields when it creates
	// the table).
	if contract := withoutIDs(schemaJSON(schemas.EventsSchema().Fields())); !reflect.DeepEqual(withoutIDs(want[lakehouse.EventsTable].Schema), contract) {
		t.Errorf("events schema differs from schemas.EventsSchema():\n%v\n%v", want[lakehouse.EventsTable].Schema, contract)
	}
	for _, name := range tables {
		if want[name].Rows == 0 {
			t.Errorf("%s is empty: the check would prove little", name)
		}
	}
	for _, name := range tables[1:] {
		w := want[name]
		w.Distinct["batch_id"] = 1
		want[name] = w
	}
	w := want[lakehouse.EventsTable]
	w.Distinct["event_id"] = generated
	want[lakehouse.EventsTable] = w

	// What PyIceberg sees.
	args := append([]string{"pyiceberg_check.py", filepath.Join(dir, "catalog.db"), lake.Warehouse(), cfg.Iceberg.Namespace}, tables...)
	cmd := exec.CommandContext(ctx, python, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", python, args, err, stderr.String())
	}
	var got struct {
		PyIceberg string               `json:"pyiceberg"`
		Tables    map[string]tableInfo `json:"tables"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("pyiceberg_check.py output: %v\n%s", err, stdout.String())
	}
	t.Logf("PyIceberg %s read %d tables", got.PyIceberg, len(got.Tables))
	for _, name := range tables {
		g, w := got.Tables[name], want[name]
		if g.Rows != w.Rows || g.SnapshotID != w.SnapshotID {
			t.Errorf("%s: PyIceberg reads %d rows of snapshot %d, iceberg-go %d rows of snapshot %d", name, g.Rows, g.SnapshotID, w.Rows, w.SnapshotID)
		}
		if !reflect.DeepEqual(g.Schema, w.Schema) {
			gj, _ := json.Marshal(g.Schema)
			wj, _ := json.Marshal(w.Schema)
			t.Errorf("%s: schemas differ\nPyIceberg:  %s\niceberg-go: %s", name, gj, wj)
		}
		if !reflect.DeepEqual(g.Distinct, w.Distinct) {
			t.Errorf("%s: distinct ids %v, want %v", name, g.Distinct, w.Distinct)
		}
		t.Logf("%s: %d rows, %d columns", name, g.Rows, len(g.Schema))
	}
}

// countRows counts the rows of the current snapshot of table name.
func countRows(ctx context.Context, lake *lakehouse.Lakehouse, name string) (int64, error) {
	tbl, err := lake.LoadTable(ctx, name)
	if err != nil {
		return 0, err
	}
	_, batches, err := lakehouse.ScanSnapshot(ctx, tbl, tbl.CurrentSnapshot(), nil)
	if err != nil {
		return 0, err
	}
	var n int64
	for rec, err := range batches {
		if err != nil {
			return 0, err
		}
		n += rec.NumRows()
		rec.Release()
	}
	return n, nil
}

func total[V any](m map[string][]V) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}

// schemaJSON renders fields as pyiceberg_check.py does, decoded the same
// way (JSON numbers as float64), so the two compare with DeepEqual.
func schemaJSON(fields []iceberg.NestedField) []any {
	out := make([]any, 0, len(fields))
	for _, f := range fields {
		out = append(out, fieldJSON(f))
	}
	b, _ := json.Marshal(out)
	var v []any
	_ = json.Unmarshal(b, &v)
	return v
}

func fieldJSON(f iceberg.NestedField) map[string]any {
	return map[string]any{"id": f.ID, "name": f.Name, "required": f.Required, "type": typeJSON(f.Type)}
}

func typeJSON(t iceberg.Type) any {
	switch t := t.(type) {
	case *iceberg.StructType:
		fs := make([]any, 0, len(t.FieldList))
		for _, f := range t.FieldList {
			fs = append(fs, fieldJSON(f))
		}
		return map[string]any{"struct": fs}
	case *iceberg.ListType:
		return map[string]any{"list": map[string]any{"id": t.ElementID, "required": t.ElementRequired, "type": typeJSON(t.Element)}}
	case *iceberg.MapType:
		return map[string]any{"map": map[string]any{"key_id": t.KeyID, "key": typeJSON(t.KeyType),
			"value_id": t.ValueID, "value_required": t.ValueRequired, "value": typeJSON(t.ValueType)}}
	}
	return fmt.Sprint(t)
}

// withoutIDs returns v without its field ids.
func withoutIDs(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for k, e := range v {
			if k != "id" && k != "key_id" && k != "value_id" {
				out[k] = withoutIDs(e)
			}
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = withoutIDs(e)
		}
		return out
	}
	return v
}
