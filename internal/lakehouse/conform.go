package lakehouse

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Conform returns rec with the columns of sc, by name, each typed exactly as
// in sc. It exists because an iceberg-go scan types map entries as nullable
// where the table (and so its writer) says required: the buffers are the
// same, only the nested fields' nullability differs, so the arrays are
// re-labelled, not copied. It releases nothing; the caller releases both.
func Conform(rec arrow.RecordBatch, sc *arrow.Schema) (arrow.RecordBatch, error) {
	cols := make([]arrow.Array, 0, sc.NumFields())
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	for _, f := range sc.Fields() {
		idx := rec.Schema().FieldIndices(f.Name)
		if len(idx) != 1 {
			return nil, fmt.Errorf("conform record: column %s: found %d times", f.Name, len(idx))
		}
		col := rec.Column(idx[0])
		if arrow.TypeEqual(col.DataType(), f.Type) {
			col.Retain()
			cols = append(cols, col)
			continue
		}
		d, err := retype(col.Data(), f.Type)
		if err != nil {
			return nil, fmt.Errorf("conform record: column %s: %w", f.Name, err)
		}
		cols = append(cols, array.MakeFromData(d))
		d.Release()
	}
	return array.NewRecordBatch(sc, cols, rec.NumRows()), nil
}

// retype returns d labelled with dt, which must have the same layout.
func retype(d arrow.ArrayData, dt arrow.DataType) (arrow.ArrayData, error) {
	if d.DataType().ID() != dt.ID() {
		return nil, fmt.Errorf("type %s cannot become %s", d.DataType(), dt)
	}
	var childTypes []arrow.DataType
	switch t := dt.(type) {
	case *arrow.MapType:
		childTypes = []arrow.DataType{t.Elem()}
	case *arrow.ListType:
		childTypes = []arrow.DataType{t.Elem()}
	case *arrow.LargeListType:
		childTypes = []arrow.DataType{t.Elem()}
	case *arrow.StructType:
		for _, f := range t.Fields() {
			childTypes = append(childTypes, f.Type)
		}
	}
	children := d.Children()
	if len(childTypes) != len(children) {
		return nil, fmt.Errorf("type %s has %d children, %s has %d", d.DataType(), len(children), dt, len(childTypes))
	}
	newChildren := make([]arrow.ArrayData, len(children))
	for i, c := range children {
		nc, err := retype(c, childTypes[i])
		if err != nil {
			for _, done := range newChildren[:i] {
				done.Release()
			}
			return nil, err
		}
		newChildren[i] = nc
	}
	out := array.NewData(dt, d.Len(), d.Buffers(), newChildren, d.NullN(), d.Offset())
	for _, c := range newChildren {
		c.Release()
	}
	return out, nil
}
