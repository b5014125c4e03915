package lakehouse

import (
	"context"
	"testing"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/schemas"
)

// Every lambdarec.* property of the parent reaches the child, known to this
// package or not (other code adds its own lambdarec.kafka.* keys); the
// child's own values win; other properties are not carried.
func TestAppendCarriesLambdarecProperties(t *testing.T) {
	l := open(t, testConfig(t))
	tbl, err := l.EnsureEvents(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	tbl = appendEvents(t, l, tbl, 0, []*schemas.UserInteraction{event("a", time.Now())}, Offsets{"events": {0: 0}})
	commit := func(props iceberg.Properties) *table.Snapshot {
		t.Helper()
		cur, err := l.LoadTable(t.Context(), EventsTable)
		if err != nil {
			t.Fatal(err)
		}
		done, err := l.Commit(t.Context(), cur, func(ctx context.Context, cur *table.Table) (*table.Transaction, error) {
			return AppendTxn(ctx, cur, nil, props)
		}, CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return done.CurrentSnapshot()
	}
	commit(iceberg.Properties{"lambdarec.kafka.topic-ids": `{"events":"abc"}`, "other": "x"})
	s := commit(iceberg.Properties{"maintenance-operation": "test"})
	p := s.Summary.Properties
	if p[OffsetsProperty] != `{"events":{"0":0}}` || p["lambdarec.kafka.topic-ids"] != `{"events":"abc"}` {
		t.Errorf("carried properties: %v", p)
	}
	if _, ok := p["other"]; ok {
		t.Errorf("a foreign property was carried: %v", p)
	}
	s = commit(Offsets{"events": {0: 5}}.Properties())
	if got := s.Summary.Properties[OffsetsProperty]; got != `{"events":{"0":5}}` {
		t.Errorf("the child's own offsets lost to the parent's: %s", got)
	}
}
