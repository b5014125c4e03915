package speed

import (
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
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

// TestPublishAndTombstones: a partition's changed pairs are published under
// its boundary with its position; a handoff to a new boundary deletes the
// keys of the old one (tombstones) and publishes every pair again.
func TestPublishAndTombstones(t *testing.T) {
	p, err := newProcessor(defaultLimits(), model.DefaultParams(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p.assign(2)
	for i, item := range []string{"i1", "i2", "i3"} {
		if _, err := p.record(2, int64(i), t0, value("e"+item, "s1", item, t0.Add(time.Duration(i)*time.Second), false)); err != nil {
			t.Fatal(err)
		}
	}
	decode := func(recs []*kgo.Record) (vals, tombs map[sharedPair]sharedCount) {
		vals, tombs = map[sharedPair]sharedCount{}, map[sharedPair]sharedCount{}
		for _, r := range recs {
			if r.Partition != 2%4 {
				t.Fatalf("record for partition 2 produced to %d", r.Partition)
			}
			if r.Value == nil {
				_, bnd, k, _, err := decodeShared(r.Key, encodeSharedValue(0, 0))
				if err != nil {
					t.Fatal(err)
				}
				tombs[k] = sharedCount{pos: bnd}
				continue
			}
			part, bnd, k, v, err := decodeShared(r.Key, r.Value)
			if err != nil || part != 2 {
				t.Fatalf("record %x/%x: partition %d, %v", r.Key, r.Value, part, err)
			}
			v.count = v.count*1000 + bnd // both in one comparable value
			vals[k] = v
		}
		return vals, tombs
	}
	vals, tombs := decode(p.appendPublish(nil, "d", 4, false))
	want := map[sharedPair]sharedCount{}
	for pr := range p.parts[2].cov.Pairs() {
		want[sharedPair{pr.A, pr.B}] = sharedCount{count: pr.Count*1000 - 1, pos: 3}
	}
	if len(want) != 3 || !reflect.DeepEqual(vals, want) || len(tombs) != 0 {
		t.Fatalf("published %v, tombstones %v; want %v", vals, tombs, want)
	}
	if recs := p.appendPublish(nil, "d", 4, false); len(recs) != 0 {
		t.Fatalf("%d records published with nothing changed", len(recs))
	}

	// A batch covering offset 0 of partition 2.
	bm, err := model.New(model.DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	p.handoff(&Batch{Meta: store.BatchMeta{BatchID: "b", Boundary: model.Boundary{2: 0}}, Model: bm})
	vals, tombs = decode(p.appendPublish(nil, "d", 4, false))
	if len(tombs) != 3 {
		t.Fatalf("tombstones %v, want the 3 keys of the old boundary", tombs)
	}
	for k, v := range tombs {
		if v.pos != -1 {
			t.Fatalf("tombstone of %v under boundary %d, want -1", k, v.pos)
		}
	}
	// Every pair the partition still holds past the new boundary is
	// published again under it.
	if len(vals) != p.parts[2].cov.Len() || len(vals) == 0 {
		t.Fatalf("republished %v, the partition holds %d pairs", vals, p.parts[2].cov.Len())
	}
	for k, v := range vals {
		if v.count%1000 != 0 {
			t.Fatalf("pair %v republished under boundary %d, want 0", k, v.count%1000)
		}
	}
}
