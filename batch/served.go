package batch

// Which batch is served. Normally the newest row of batch_runs; an operator
// may pin one (`lambdarec batch pin ID`, `batch rollback`) until unpinned.
// The pin is a property of the batch_runs table, so every process that
// follows batches (serve's and dev's loaders, the speed layer's batch source,
// the batch run itself) sees the same choice through the catalog, and it
// survives restarts. A pinned batch's view tables are kept by the clean-up
// of later runs, and later runs are computed and recorded but not published
// while the pin holds.
//
// The serving store takes each batch id once (store.ErrBatchExists), so a
// batch served again after another one was published — a rollback, a pin of
// an older batch, the newest batch again after an unpin — is published
// under `<batch id>~<n>`, n counting the changes of the served batch
// (ServeProperty), the same id in every process.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
)

// Table properties of batch_runs that hold the served batch.
const (
	// PinProperty holds the pinned batch id; absent when none is pinned.
	PinProperty = "lambdarec.serve.pinned_batch_id"
	// PinAtProperty is when the pin was set (RFC 3339).
	PinAtProperty = "lambdarec.serve.pinned_at"
	// PinReasonProperty says how: "pin" or "rollback".
	PinReasonProperty = "lambdarec.serve.pin_reason"
	// ServeGenerationProperty counts the changes of the served batch (pin,
	// unpin, rollback); ServeChangedAtProperty is when the last one happened.
	ServeGenerationProperty = "lambdarec.serve.generation"
	ServeChangedAtProperty  = "lambdarec.serve.changed_at"
)

// Pin is the pin on batch_runs.
type Pin struct {
	// BatchID is the pinned batch; empty when none is.
	BatchID string    `json:"batch_id,omitempty"`
	At      time.Time `json:"pinned_at,omitzero"`
	Reason  string    `json:"reason,omitempty"`
	// Generation counts the changes of the served batch; ChangedAt is the
	// last one's time (zero when there was none).
	Generation int64     `json:"generation"`
	ChangedAt  time.Time `json:"changed_at,omitzero"`
}

// Pinned reports whether a batch is pinned.
func (p Pin) Pinned() bool { return p.BatchID != "" }

func pinOf(props iceberg.Properties) Pin {
	p := Pin{BatchID: props[PinProperty], Reason: props[PinReasonProperty]}
	p.At, _ = time.Parse(time.RFC3339Nano, props[PinAtProperty])
	p.ChangedAt, _ = time.Parse(time.RFC3339Nano, props[ServeChangedAtProperty])
	p.Generation, _ = strconv.ParseInt(props[ServeGenerationProperty], 10, 64)
	return p
}

// CurrentPin returns the pin of batch_runs (the zero Pin when the table does
// not exist yet).
func CurrentPin(ctx context.Context, lake *lakehouse.Lakehouse) (Pin, error) {
	t, err := lake.LoadTable(ctx, TableBatchRuns)
	if err != nil {
		if isNoTable(err) {
			return Pin{}, nil
		}
		return Pin{}, err
	}
	return pinOf(t.Properties()), nil
}

// Served is the batch to serve.
type Served struct {
	Run Run
	Pin Pin
	// PublishID is the id to publish the batch's view under (see the file
	// comment): Run.BatchID, or Run.BatchID~n when the batch is served
	// again after a change of the served batch.
	PublishID string
}

// ServedRun returns the batch to serve: the pinned one, else the newest; ok
// is false when no batch was recorded yet. A pin naming a batch that is no
// longer in batch_runs is an error (it is not silently replaced).
func ServedRun(ctx context.Context, lake *lakehouse.Lakehouse) (Served, bool, error) {
	runs, err := Runs(ctx, lake)
	if err != nil || len(runs) == 0 {
		return Served{}, false, err
	}
	pin, err := CurrentPin(ctx, lake)
	if err != nil {
		return Served{}, false, err
	}
	s := Served{Run: runs[0], Pin: pin}
	if pin.Pinned() {
		r, ok := findRun(runs, pin.BatchID)
		if !ok {
			return Served{}, false, fmt.Errorf("pinned batch %s is not in %s (unpin it: lambdarec batch unpin)", pin.BatchID, TableBatchRuns)
		}
		s.Run = r
	}
	s.PublishID = s.Run.BatchID
	if pin.Generation > 0 && !s.Run.FinishedAt.After(pin.ChangedAt) {
		s.PublishID = s.Run.BatchID + "~" + strconv.FormatInt(pin.Generation, 10)
	}
	return s, true, nil
}

func findRun(runs []Run, id string) (Run, bool) {
	for _, r := range runs {
		if r.BatchID == id {
			return r, true
		}
	}
	return Run{}, false
}

// ErrViewsRemoved is returned when a batch to pin no longer has its view
// tables (only the newest Config.Retain batches, and a pinned one, keep
// them).
var ErrViewsRemoved = errors.New("its view tables were removed (only the newest batches keep them, see batch.retain)")

// SetPin pins batch id (reason "pin" or "rollback"): it is served until
// Unpin. The batch must be in batch_runs with its view tables kept.
func SetPin(ctx context.Context, lake *lakehouse.Lakehouse, id, reason string, now time.Time) (Run, error) {
	runs, err := Runs(ctx, lake)
	if err != nil {
		return Run{}, err
	}
	r, ok := findRun(runs, id)
	if !ok {
		return Run{}, fmt.Errorf("pin batch %s: no such batch in %s (lambdarec batch list)", id, TableBatchRuns)
	}
	kept, err := viewsKept(ctx, lake, id)
	if err != nil {
		return Run{}, fmt.Errorf("pin batch %s: %w", id, err)
	}
	if !kept {
		return Run{}, fmt.Errorf("pin batch %s: %w", id, ErrViewsRemoved)
	}
	at := now.UTC().Format(time.RFC3339Nano)
	err = changeServed(ctx, lake, func(t *table.Table, txn *table.Transaction) error {
		return txn.SetProperties(iceberg.Properties{PinProperty: id, PinAtProperty: at, PinReasonProperty: reason, ServeChangedAtProperty: at})
	})
	if err != nil {
		return Run{}, fmt.Errorf("pin batch %s: %w", id, err)
	}
	return r, nil
}

// Unpin removes the pin: the newest batch is served again. Without a pin it
// does nothing and returns false.
func Unpin(ctx context.Context, lake *lakehouse.Lakehouse, now time.Time) (bool, error) {
	pin, err := CurrentPin(ctx, lake)
	if err != nil || !pin.Pinned() {
		return false, err
	}
	at := now.UTC().Format(time.RFC3339Nano)
	err = changeServed(ctx, lake, func(t *table.Table, txn *table.Transaction) error {
		if err := txn.RemoveProperties([]string{PinProperty, PinAtProperty, PinReasonProperty}); err != nil {
			return err
		}
		return txn.SetProperties(iceberg.Properties{ServeChangedAtProperty: at})
	})
	if err != nil {
		return false, fmt.Errorf("unpin: %w", err)
	}
	return true, nil
}

// Rollback pins the batch recorded before the one served now, and returns
// it.
func Rollback(ctx context.Context, lake *lakehouse.Lakehouse, now time.Time) (Run, error) {
	s, ok, err := ServedRun(ctx, lake)
	if err != nil {
		return Run{}, err
	}
	if !ok {
		return Run{}, errors.New("rollback: no batch recorded yet")
	}
	runs, err := Runs(ctx, lake)
	if err != nil {
		return Run{}, err
	}
	for i, r := range runs {
		if r.BatchID == s.Run.BatchID {
			if i+1 >= len(runs) {
				return Run{}, fmt.Errorf("rollback: batch %s is the oldest recorded, there is none before it", r.BatchID)
			}
			return SetPin(ctx, lake, runs[i+1].BatchID, "rollback", now)
		}
	}
	return Run{}, fmt.Errorf("rollback: served batch %s is not in %s", s.Run.BatchID, TableBatchRuns)
}

// changeServed commits a property change of batch_runs that changes the
// served batch, with the generation counter raised.
func changeServed(ctx context.Context, lake *lakehouse.Lakehouse, change func(t *table.Table, txn *table.Transaction) error) error {
	if err := ensureTables(ctx, lake); err != nil {
		return err
	}
	t, err := lake.LoadTable(ctx, TableBatchRuns)
	if err != nil {
		return err
	}
	_, err = lake.Commit(ctx, t, func(ctx context.Context, t *table.Table) (*table.Transaction, error) {
		txn := t.NewTransaction()
		if err := change(t, txn); err != nil {
			return nil, err
		}
		gen := pinOf(t.Properties()).Generation + 1
		if err := txn.SetProperties(iceberg.Properties{ServeGenerationProperty: strconv.FormatInt(gen, 10)}); err != nil {
			return nil, err
		}
		return txn, nil
	}, lakehouse.CommitOptions{})
	return err
}

// viewsKept reports whether batch id still has rows in its view tables (not
// its state tables, whose rows stay while a later batch's state chain holds
// them).
func viewsKept(ctx context.Context, lake *lakehouse.Lakehouse, id string) (bool, error) {
	for _, def := range []*tableDef{&popularItemsDef, &itemNeighborsDef} {
		t, err := lake.LoadTable(ctx, def.name)
		if err != nil {
			return false, err
		}
		if t.CurrentSnapshot() == nil {
			return false, nil
		}
		files, err := t.Scan(table.WithRowFilter(iceberg.EqualTo(iceberg.Reference("batch_id"), id))).PlanFiles(ctx)
		if err != nil {
			return false, fmt.Errorf("plan %s: %w", def.name, err)
		}
		if len(files) > 0 {
			return true, nil
		}
	}
	return false, nil
}

func isNoTable(err error) bool { return errors.Is(err, catalog.ErrNoSuchTable) }
