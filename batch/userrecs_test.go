package batch

import (
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
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
