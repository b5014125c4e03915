package batch

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/schemas"
)

// TestAppendInputsEqualsEncodeInputs: the inputs column written without an
// encoder holds encodeInputs' bytes, for plain items and for items JSON
// escapes.
func TestAppendInputsEqualsEncodeInputs(t *testing.T) {
	for _, items := range [][]string{
		nil,
		{"item-1"},
		{"item-1", "item-22", "a b~c"},
		{"quote\"d", "item-2"},
		{"item-1", `back\slash`},
		{"<b>", "a&b"},
		{"tab\there", "del\x7f"},
		{"é", "日本"},
		{"bad\xffutf8"},
	} {
		want := encodeInputs(items)
		if got := string(appendInputs([]byte("x"), items)); got != "x"+want {
			t.Errorf("appendInputs(%q) = %q, encodeInputs %q", items, got, "x"+want)
		}
	}
}

// TestViewFileCompression: the columns compression barely shrinks
// (uncompressedCols) are written uncompressed, the others with
// viewFileCodec.
func TestViewFileCompression(t *testing.T) {
	for _, def := range viewDefs {
		props := parquet.NewWriterProperties(viewFileProps(memory.DefaultAllocator, def)...)
		for _, c := range def.cols {
			want := viewFileCodec
			if slices.Contains(uncompressedCols[def.name], c.name) {
				want = compress.Codecs.Uncompressed
			}
			if got := props.CompressionFor(c.name); got != want {
				t.Errorf("%s.%s: codec %v, want %v", def.name, c.name, got, want)
			}
		}
	}
	for name, cols := range uncompressedCols {
		i := slices.IndexFunc(viewDefs, func(d *tableDef) bool { return d.name == name })
		if i < 0 {
			t.Fatalf("uncompressedCols names table %s, not a view table", name)
		}
		for _, c := range cols {
			if !slices.ContainsFunc(viewDefs[i].cols, func(x col) bool { return x.name == c }) {
				t.Errorf("uncompressedCols names %s.%s, not a column", name, c)
			}
		}
	}
}

// TestScoreUsersByIDEqualsByName: users scored by id (the ids of their
// recent items, their purchases by id) get exactly the recommendations and
// recent items of the scoring by item string (Scorer.Score over the top
// rows), with purchases excluded and ties in time and score.
func TestScoreUsersByIDEqualsByName(t *testing.T) {
	p := model.DefaultParams()
	acc, err := model.NewAccumulator(p)
	if err != nil {
		t.Fatal(err)
	}
	b := acc.Builder()
	r := rand.New(rand.NewPCG(3, 4))
	kinds := []schemas.Kind{schemas.KindPageView, schemas.KindProductClick, schemas.KindAddToCart, schemas.KindPurchase}
	for i := range 20000 {
		user := r.IntN(300)
		b.Add(model.Event{
			EventID:   fmt.Sprintf("e%d", i),
			SessionID: fmt.Sprintf("s%d-%d", user, r.IntN(8)),
			UserID:    fmt.Sprintf("u%d", user),
			ItemID:    fmt.Sprintf("i%d", r.IntN(400)),
			Kind:      kinds[r.IntN(len(kinds))],
			Time:      1_700_000_000_000_000 + int64(r.IntN(5000))*1_000_000, // ties in time
			Offset:    int64(i),
		})
	}
	acc.Add(b)
	m := acc.Model()
	run := &Runner{cfg: Config{Params: &p, TopK: 20, PopularK: 10}}
	top, dense := run.neighbourRows(m, nil)
	byID := run.scoreUsers(m, dense, top)
	if byID.itemIDs == nil {
		t.Fatal("the model's users were not scored by id")
	}
	dense.broken = true // scored by item string instead
	byName := run.scoreUsers(m, dense, top)
	if byName.itemIDs != nil {
		t.Fatal("a broken dense source still scored by id")
	}
	if byID.n != byName.n || byID.n < 250 {
		t.Fatalf("%d users scored by id, %d by name: want the same, most of 300", byID.n, byName.n)
	}
	names := m.Users().ItemNames()
	for id := range byID.recs {
		if !slices.Equal(byID.recs[id], byName.recs[id]) || !slices.Equal(byID.items[id], byName.items[id]) {
			t.Fatalf("user %s: by id %v from %v, by name %v from %v", m.Users().UserName(uint32(id)),
				byID.recs[id], byID.items[id], byName.recs[id], byName.items[id])
		}
		for j, s := range byID.recs[id] {
			if got := names[byID.itemIDs[id][j]]; got != s.Item {
				t.Fatalf("user %d rank %d: item id names %s, want %s", id, j, got, s.Item)
			}
		}
	}
}
