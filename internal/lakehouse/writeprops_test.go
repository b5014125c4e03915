package lakehouse

import (
	"maps"
	"testing"

	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/schemas"
)

// TestEnsureEventsSetsWriteProperties checks that a new events table gets
// the Parquet write properties, and that an existing table without them
// gets those it lacks while a value set by hand is kept.
func TestEnsureEventsSetsWriteProperties(t *testing.T) {
	l := open(t, testConfig(t))
	ctx := t.Context()
	old := maps.Clone(EventsTableProperties)
	for _, k := range eventsWriteProperties {
		delete(old, k)
	}
	old[table.ParquetCompressionLevelKey] = "3" // set by hand
	if _, err := l.EnsureTable(ctx, EventsTable, schemas.EventsSchema(), schemas.EventsPartitionSpec(), old); err != nil {
		t.Fatal(err)
	}
	tbl, err := l.EnsureEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := tbl.Properties()[parquetDictEnabledKey]; got != "false" {
		t.Errorf("%s = %q, want false", parquetDictEnabledKey, got)
	}
	if got := tbl.Properties()[table.ParquetCompressionLevelKey]; got != "3" {
		t.Errorf("%s = %q, want the value set by hand", table.ParquetCompressionLevelKey, got)
	}
	before := tbl.Metadata().LastUpdatedMillis()
	again, err := l.EnsureEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again.Metadata().LastUpdatedMillis() != before {
		t.Error("EnsureEvents committed again though nothing was missing")
	}

	fresh := open(t, testConfig(t))
	tbl, err = fresh.EnsureEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range eventsWriteProperties {
		if got := tbl.Properties()[k]; got != EventsTableProperties[k] {
			t.Errorf("new table: %s = %q, want %q", k, got, EventsTableProperties[k])
		}
	}
}
