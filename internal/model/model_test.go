package model

import (
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/schemas"
)

func ev(id, session, item string, kind schemas.Kind, minute int64, offset int64) Event {
	return Event{EventID: id, SessionID: session, UserID: "u-" + session, ItemID: item, Kind: kind,
		Time: minute * int64(time.Minute/time.Microsecond), Partition: 0, Offset: offset}
}

func TestPairWeightsWindowDedup(t *testing.T) {
	p := DefaultParams()
	p.Pair = PairProduct
	const (
		pv = schemas.KindPageView
		pc = schemas.KindProductClick
		ac = schemas.KindAddToCart
		pu = schemas.KindPurchase
	)
	f := func(name string, events []Event, a, b string, want int64) {
		t.Helper()
		m, err := Recompute(p, events)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Covisit().Get(a, b); got != want {
			t.Errorf("%s: C[%s][%s] = %d, want %d", name, a, b, got, want)
		}
		if got := m.Covisit().Get(b, a); got != want {
			t.Errorf("%s: C[%s][%s] = %d, want %d (symmetry)", name, b, a, got, want)
		}
	}
	f("view-view", []Event{ev("1", "s", "a", pv, 0, 0), ev("2", "s", "b", pv, 1, 1)}, "a", "b", 1)
	f("click-cart", []Event{ev("1", "s", "a", pc, 0, 0), ev("2", "s", "b", ac, 1, 1)}, "a", "b", 8)
	f("purchase-purchase", []Event{ev("1", "s", "a", pu, 0, 0), ev("2", "s", "b", pu, 1, 1)}, "a", "b", 64)
	f("window edge inclusive", []Event{ev("1", "s", "a", pv, 0, 0), ev("2", "s", "b", pv, 30, 1)}, "a", "b", 1)
	f("outside window", []Event{ev("1", "s", "a", pv, 0, 0), ev("2", "s", "b", pv, 31, 1)}, "a", "b", 0)
	f("late event in window", []Event{ev("1", "s", "a", pv, 40, 0), ev("2", "s", "b", pv, 15, 1)}, "a", "b", 1)
	f("same item no pair", []Event{ev("1", "s", "a", pv, 0, 0), ev("2", "s", "a", pv, 1, 1)}, "a", "a", 0)
	f("duplicate counted once", []Event{ev("1", "s", "a", pv, 0, 0), ev("2", "s", "b", pv, 1, 1), ev("2", "s", "b", pv, 1, 2)}, "a", "b", 1)
	f("duplicate first occurrence wins", []Event{ev("1", "s", "a", pv, 0, 5), ev("x", "s", "b", pu, 1, 3), ev("x", "s", "b", pv, 1, 9)}, "a", "b", 8)
	f("other session no pair", []Event{ev("1", "s", "a", pv, 0, 0), ev("2", "t", "b", pv, 1, 1)}, "a", "b", 0)
	p.Pair = PairMin
	f("min rule", []Event{ev("1", "s", "a", pc, 0, 0), ev("2", "s", "b", pu, 1, 1)}, "a", "b", 2)
	p.Pair = PairMax
	f("max rule", []Event{ev("1", "s", "a", pc, 0, 0), ev("2", "s", "b", pu, 1, 1)}, "a", "b", 8)
	p.Weights.PageView = 0
	f("zero weight kind", []Event{ev("1", "s", "a", pv, 0, 0), ev("2", "s", "b", pu, 1, 1)}, "a", "b", 0)
	p = DefaultParams()
	p.Pair = PairProduct
	f("multiple pairs sum", []Event{ev("1", "s", "a", pv, 0, 0), ev("2", "s", "b", pv, 1, 1), ev("3", "s", "a", pc, 2, 2)}, "a", "b", 3)
}
