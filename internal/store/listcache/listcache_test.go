package listcache

import (
	"fmt"
	"testing"

	"github.com/lambdarec/lambdarec/internal/store"
)

func TestCache(t *testing.T) {
	c := New(64)
	k := Key{Batch: "b1", Kind: Neighbors, Key: "item-1"}
	if _, ok := c.Get(k); ok {
		t.Fatal("hit in an empty cache")
	}
	c.Put(k, []store.Scored{{Item: "x", Score: 1}})
	if l, ok := c.Get(k); !ok || len(l) != 1 || l[0].Item != "x" {
		t.Fatalf("Get = %v, %v", l, ok)
	}
	// Same key in another batch or list is another entry; a nil list is cached.
	for _, other := range []Key{{Batch: "b2", Kind: Neighbors, Key: "item-1"}, {Batch: "b1", Kind: UserRecs, Key: "item-1"}} {
		if _, ok := c.Get(other); ok {
			t.Errorf("Get(%+v) hit the entry of %+v", other, k)
		}
		if other.String() == k.String() {
			t.Errorf("%+v and %+v share a singleflight key", other, k)
		}
	}
	miss := Key{Batch: "b1", Kind: Neighbors, Key: "unknown"}
	c.Put(miss, nil)
	if l, ok := c.Get(miss); !ok || l != nil {
		t.Errorf("cached miss = %v, %v", l, ok)
	}
	// Bounded: far more puts than entries leave at most the bound.
	for i := range 1000 {
		c.Put(Key{Batch: "b3", Kind: UserRecs, Key: fmt.Sprint(i)}, nil)
	}
	if n := c.Len(); n > 64 {
		t.Errorf("Len = %d after 1000 puts, want at most 64", n)
	}
	c.Purge()
	if n := c.Len(); n != 0 {
		t.Errorf("Len after Purge = %d", n)
	}
}
