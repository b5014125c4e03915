package gclayout

import (
	"reflect"
	"testing"
)

func TestHoldsPointer(t *testing.T) {
	type scalars struct {
		a int64
		b [4]uint32
		c [0]*int
	}
	type nested struct {
		s scalars
		p [2]struct{ x *int }
	}
	for _, c := range []struct {
		ty   reflect.Type
		want bool
	}{
		{reflect.TypeFor[scalars](), false},
		{reflect.TypeFor[nested](), true},
		{reflect.TypeFor[string](), true},
		{reflect.TypeFor[[]uint32](), true},
		{reflect.TypeFor[map[uint64]int32](), true},
		{reflect.TypeFor[[3]float64](), false},
		{reflect.TypeFor[any](), true},
	} {
		if got := HoldsPointer(c.ty); got != c.want {
			t.Errorf("HoldsPointer(%v) = %v, want %v", c.ty, got, c.want)
		}
	}
}

func TestPointerAfterScalar(t *testing.T) {
	type good struct {
		p *int
		s string
		n int
	}
	type bad struct {
		p *int
		n int
		s []byte
	}
	if f, a, ok := PointerAfterScalar(reflect.TypeFor[good]()); ok {
		t.Fatalf("good: %s after %s", f, a)
	}
	if f, a, ok := PointerAfterScalar(reflect.TypeFor[bad]()); !ok || f != "s" || a != "n" {
		t.Fatalf("bad: %q after %q, %v", f, a, ok)
	}
}
