package batch

import (
	"fmt"
	"testing"

	"github.com/lambdarec/lambdarec/internal/model"
)

// TestDenseRowsBound: the bound the batch's dense rows give ScoreDense
// (DenseLen) is above every id their rows hold, also when rows are added
// with neighbours interned long after the row's own item, past the
// accumulator's first slots; and users scored through it equal Score.
func TestDenseRowsBound(t *testing.T) {
	cov := model.NewCovisit()
	const n = 5000
	for i := range n {
		cov.Add(fmt.Sprintf("i%05d", i), fmt.Sprintf("i%05d", (i*7919+1)%n), int64(1+i%13))
	}
	d := newDenseRows(cov)
	for i := 0; i < n; i += 3 {
		item := fmt.Sprintf("i%05d", i)
		d.add(item, cov.TopK(item, 20))
	}
	if d.broken {
		t.Fatal("rows broken")
	}
	bound := d.DenseLen()
	for id, ids := range d.ids {
		for _, nid := range ids {
			if int(nid) >= bound {
				t.Fatalf("row %d holds id %d, DenseLen %d", id, nid, bound)
			}
		}
	}
	p := model.DefaultParams()
	s, err := model.NewScorer(p)
	if err != nil {
		t.Fatal(err)
	}
	for u := range 50 {
		var ids []uint32
		for r := range 5 {
			id, _ := cov.ItemID(fmt.Sprintf("i%05d", ((u*37+r*911)%(n/3))*3))
			ids = append(ids, id)
		}
		want := fmt.Sprint(s.ScoreDense(unbounded{d}, ids, nil, 20))
		if got := fmt.Sprint(s.ScoreDense(d, ids, nil, 20)); got != want {
			t.Fatalf("user %d: with the bound %v, without %v", u, got, want)
		}
	}
}

// unbounded hides denseRows' DenseLen: ScoreDense scans each row for its
// largest id instead.
type unbounded struct{ d *denseRows }

func (u unbounded) DenseRow(id uint32) ([]uint32, []int64) { return u.d.DenseRow(id) }
func (u unbounded) DenseItem(id uint32) string             { return u.d.DenseItem(id) }
