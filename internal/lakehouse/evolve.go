package lakehouse

// Schema evolution of lambdarec's tables on start-up. The contract (for
// `events`, interaction.proto; for the batch tables, their definitions) is
// the schema a process wants; the table has the schema it was created with
// plus every change since. The rules:
//
//   - a column the contract has and the table lacks is added as an optional
//     column through an Iceberg schema update (old rows read it as null);
//   - a column whose type differs is refused, naming the column: Iceberg
//     could only widen a few primitive types, and the Kafka records already
//     archived were written under the old type;
//   - a column the table has and the contract lacks (a field removed from
//     the contract, or a binary older than the table) is refused, naming the
//     column: a writer without it cannot fill it, and the column's history
//     would be silently cut. Restore the field (deprecate it instead of
//     deleting it), or run the binary that knows it.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
)

// SchemaDiff is how a table's schema differs from the schema wanted.
type SchemaDiff struct {
	// Added are the columns the table lacks, in the wanted schema's order.
	Added []iceberg.NestedField
	// Refused are the differences that no schema update makes: a removed or
	// retyped column, each naming it.
	Refused []error
}

// DiffSchema compares have (the table's schema) with want (the contract).
func DiffSchema(have, want *iceberg.Schema) SchemaDiff {
	var d SchemaDiff
	for _, f := range want.Fields() {
		h, ok := have.FindFieldByName(f.Name)
		switch {
		case !ok:
			d.Added = append(d.Added, f)
		case !sameType(h.Type, f.Type):
			d.Refused = append(d.Refused, fmt.Errorf("column %s is %s in the table but %s in the contract: retyping a field is refused (add a field with a new name instead)", f.Name, h.Type, f.Type))
		}
	}
	for _, f := range have.Fields() {
		if _, ok := want.FindFieldByName(f.Name); !ok {
			d.Refused = append(d.Refused, fmt.Errorf("column %s (%s) is in the table but not in the contract: removing a field is refused (keep it in the contract, deprecated)", f.Name, f.Type))
		}
	}
	return d
}

// evolve brings t's schema to want: it adds the columns t lacks as optional
// columns in one schema update, and refuses removed or retyped columns with
// an error naming each. It returns the table as committed (t itself when
// nothing changed).
func (l *Lakehouse) evolve(ctx context.Context, t *table.Table, want *iceberg.Schema) (*table.Table, error) {
	d := DiffSchema(t.Schema(), want)
	if err := errors.Join(d.Refused...); err != nil {
		return nil, err
	}
	if len(d.Added) == 0 {
		return t, nil
	}
	committed, err := l.Commit(ctx, t, func(ctx context.Context, t *table.Table) (*table.Transaction, error) {
		// Built on the reloaded table after a conflict: another process may
		// have added some of the columns meanwhile.
		d := DiffSchema(t.Schema(), want)
		if err := errors.Join(d.Refused...); err != nil {
			return nil, err
		}
		txn := t.NewTransaction()
		if len(d.Added) == 0 {
			return txn, nil
		}
		u := txn.UpdateSchema(true, false)
		for _, f := range d.Added {
			// Optional even when the contract says required: rows written
			// before the column existed have no value for it.
			u.AddColumn([]string{f.Name}, f.Type, f.Doc, false, nil)
		}
		if err := u.Commit(); err != nil {
			return nil, fmt.Errorf("update schema: %w", err)
		}
		return txn, nil
	}, CommitOptions{})
	if err != nil {
		return nil, fmt.Errorf("evolve schema: %w", err)
	}
	names := make([]string, len(d.Added))
	for i, f := range d.Added {
		names[i] = f.Name + " " + f.Type.String()
	}
	l.log.Info("iceberg table schema evolved", "table", strings.Join(t.Identifier(), "."), "added_columns", names,
		"schema_id", committed.Schema().ID)
	return committed, nil
}
