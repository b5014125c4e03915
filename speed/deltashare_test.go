package speed

import (
	"log/slog"
	"testing"

	"github.com/lambdarec/lambdarec/internal/model"
)

// FuzzDecodeShared: any record of the deltas topic decodes or is rejected,
// never panics, and what decodes survives an encode/decode round trip.
func FuzzDecodeShared(f *testing.F) {
	f.Add(encodeSharedKey(3, 41, "item-a", "item-b"), encodeSharedValue(7, 99))
	f.Add(encodeSharedKey(0, -1, "", "x"), encodeSharedValue(0, 0))
	f.Add([]byte{sharedKeyVersion, 0x02}, []byte{0x01})
	f.Add([]byte("garbage"), []byte(nil))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		part, bnd, k, v, err := decodeShared(key, value)
		if err != nil {
			return
		}
		if k.a >= k.b || part < 0 {
			t.Fatalf("decoded an invalid key: %d %+v", part, k)
		}
		p2, b2, k2, v2, err := decodeShared(encodeSharedKey(part, bnd, k.a, k.b), encodeSharedValue(v.count, v.pos))
		if err != nil || p2 != part || b2 != bnd || k2 != k || v2 != v {
			t.Fatalf("%x/%x decoded to %d %d %+v %+v, which does not survive a round trip (%v)", key, value, part, bnd, k, v, err)
		}
	})
}

// TestApplyRemote: a published count enters the merged rows only for a
// partition not owned here, at the served boundary, and only if its
// position is not older than the one held (a replaying owner's).
func TestApplyRemote(t *testing.T) {
	p, err := newProcessor(defaultLimits(), model.DefaultParams(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p.assign(0)
	p.bound = model.Boundary{1: 10}
	ab := newSharedPair("b", "a")
	if ab != (sharedPair{"a", "b"}) {
		t.Fatalf("pair not ordered: %+v", ab)
	}
	p.applyRemote(1, 10, ab, sharedCount{count: 5, pos: 20})
	if got := p.nb.count("a", "b"); got != 5 {
		t.Fatalf("count after a remote publication = %d, want 5", got)
	}
	p.applyRemote(1, 10, ab, sharedCount{count: 3, pos: 15}) // older position: a replay
	if got := p.nb.count("a", "b"); got != 5 {
		t.Fatalf("an older position changed the count to %d", got)
	}
	p.applyRemote(1, 10, ab, sharedCount{count: 8, pos: 25})
	p.applyRemote(1, 12, ab, sharedCount{count: 100, pos: 30}) // another batch's boundary
	p.applyRemote(0, -1, ab, sharedCount{count: 100, pos: 30}) // owned here: counted locally
	if got := p.nb.count("a", "b"); got != 8 {
		t.Fatalf("count = %d, want 8", got)
	}
	// The merged row of a, once maintained, follows the remote counts.
	if row := p.nb.Neighbors("a"); len(row) != 1 || row[0] != (model.ItemCount{Item: "b", Count: 8}) {
		t.Fatalf("row of a = %v", row)
	}
	p.applyRemote(1, 10, ab, sharedCount{count: 9, pos: 26})
	if row := p.nb.Neighbors("a"); row[0].Count != 9 {
		t.Fatalf("row of a = %v after a bump", row)
	}
	p.applyRemote(1, 10, ab, sharedCount{count: 4, pos: 27}) // lower: recomputed
	if row := p.nb.Neighbors("a"); row[0].Count != 4 {
		t.Fatalf("row of a = %v after a lower count", row)
	}
	// Partition 1 assigned here: its remote counts leave the rows.
	p.assign(1)
	if got := p.nb.count("a", "b"); got != 0 {
		t.Fatalf("count = %d after assigning the partition", got)
	}
	// And come back when it is dropped again.
	p.drop([]int32{1})
	if got := p.nb.count("a", "b"); got != 4 {
		t.Fatalf("count = %d after dropping the partition, want 4", got)
	}
}
