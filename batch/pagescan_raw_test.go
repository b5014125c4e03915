package batch

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/schemas"
)

// TestRawStringsEqualReadBatch checks rawStrings, the page scan's reader
// of PLAIN string column chunks, against the values written: an optional
// column (runs of nulls, nulls among values, stretches without a null:
// RLE and bit-packed definition levels, pages with and without nulls) and
// a required one, empty values among them, in pages of both versions,
// compressed or not, several pages to a row group and several row groups,
// read in chunks of every size so that chunks straddle pages. A file with
// dictionary pages is not rawEligible (it takes ReadBatchInPage), but for
// the chunks the writer left plain.
func TestRawStringsEqualReadBatch(t *testing.T) {
	const rows = 5000
	rng := rand.New(rand.NewPCG(1, 2))
	want := [2][]string{make([]string, rows), make([]string, rows)}
	null := make([]bool, rows)
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "opt", Type: arrow.BinaryTypes.String, Nullable: true},
		{Name: "req", Type: arrow.BinaryTypes.String},
	}, nil)
	bld := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer bld.Release()
	opt, req := bld.Field(0).(*array.StringBuilder), bld.Field(1).(*array.StringBuilder)
	for i := range rows {
		switch {
		case i >= 1000 && i < 1300: // a long run of nulls
			null[i] = true
		case i >= 2000 && i < 2600: // nulls among values
			null[i] = rng.IntN(3) == 0
		case i >= 4000: // no null: pages whose levels are one run
		default:
			null[i] = rng.IntN(50) == 0
		}
		if null[i] {
			opt.AppendNull()
		} else {
			want[0][i] = strings.Repeat("v", rng.IntN(12)) + fmt.Sprint(i%97)
			if i%13 == 0 {
				want[0][i] = ""
			}
			opt.Append(want[0][i])
		}
		want[1][i] = fmt.Sprintf("r%d", rng.IntN(1<<rng.IntN(20)))
		if i%29 == 0 {
			want[1][i] = ""
		}
		req.Append(want[1][i])
	}
	rec := bld.NewRecordBatch()
	defer rec.Release()
	tbl := array.NewTableFromRecords(sc, []arrow.RecordBatch{rec})
	defer tbl.Release()

	for _, v := range []parquet.DataPageVersion{parquet.DataPageV1, parquet.DataPageV2} {
		for _, codec := range []compress.Compression{compress.Codecs.Uncompressed, compress.Codecs.Zstd} {
			for _, dict := range []bool{false, true} {
				name := fmt.Sprintf("v%d/%s/dict=%v", v+1, codec, dict)
				var buf bytes.Buffer
				props := parquet.NewWriterProperties(parquet.WithDataPageVersion(v), parquet.WithCompression(codec),
					parquet.WithDictionaryDefault(dict), parquet.WithDataPageSize(700), parquet.WithBatchSize(100),
					parquet.WithMaxRowGroupLength(1900))
				if err := pqarrow.WriteTable(tbl, &buf, 1000, props, pqarrow.DefaultWriterProps()); err != nil {
					t.Fatal(err)
				}
				r, err := file.NewParquetReader(bytes.NewReader(buf.Bytes()))
				if err != nil {
					t.Fatal(err)
				}
				row, dictChunks := 0, 0
				for g := range r.NumRowGroups() {
					rg := r.RowGroup(g)
					n := int(rg.NumRows())
					for col := range 2 {
						cc, err := rg.MetaData().ColumnChunk(col)
						if err != nil {
							t.Fatal(err)
						}
						if !rawEligible(cc) {
							if !dict {
								t.Fatalf("%s: column chunk %d/%d not rawEligible with encodings %v", name, g, col, cc.Encodings())
							}
							dictChunks++
							continue
						}
						pr, err := rg.GetColumnPageReader(col)
						if err != nil {
							t.Fatal(err)
						}
						s := &rawStrings{pr: pr, maxDef: r.MetaData().Schema.Column(col).MaxDefinitionLevel(), name: sc.Field(col).Name}
						var b []byte
						ends := make([]uint32, n)
						for done := 0; done < n; {
							k := min(n-done, 1+rng.IntN(700))
							if b, err = s.read(k, b[:0], ends); err != nil {
								t.Fatalf("%s: row group %d column %d, rows %d+%d: %v", name, g, col, done, k, err)
							}
							start := uint32(0)
							for j := range k {
								if got, w := string(b[start:ends[j]]), want[col][row+done+j]; got != w {
									t.Fatalf("%s: column %d row %d (null %v): %q, want %q", name, col, row+done+j, null[row+done+j], got, w)
								}
								start = ends[j]
							}
							done += k
						}
						if err := s.next(); err == nil || s.row != s.rows {
							t.Fatalf("%s: column %d: a page past the row group's %d rows (%v)", name, col, n, err)
						}
					}
					row += n
				}
				if dict && dictChunks == 0 {
					t.Fatalf("%s: every column chunk rawEligible", name)
				}
				if row != rows {
					t.Fatalf("%s: %d rows in the row groups, want %d", name, row, rows)
				}
				r.Close()
			}
		}
	}
}

// TestDecodeLevels checks decodeLevels on hand-made hybrid runs: an RLE
// run, a bit-packed run padded past the levels wanted, and malformed input.
func TestDecodeLevels(t *testing.T) {
	// 3 ones (RLE), then 8 bit-packed levels 1,0,1,1,0,0,0,1 of which 6 are
	// wanted, LSB first: 0b10001101.
	defs, nulls, err := decodeLevels(nil, []byte{3 << 1, 1, 1<<1 | 1, 0b10001101}, 9)
	if err != nil || !nulls || fmt.Sprint(defs) != "[1 1 1 1 0 1 1 0 0]" {
		t.Fatalf("decodeLevels = %v, %v, %v", defs, nulls, err)
	}
	if defs, nulls, err := decodeLevels(defs, []byte{5 << 1, 1}, 5); err != nil || nulls || fmt.Sprint(defs) != "[1 1 1 1 1]" {
		t.Fatalf("decodeLevels of one run = %v, %v, %v", defs, nulls, err)
	}
	// Three ones bit-packed: the group's five padding bits are no nulls.
	if defs, nulls, err := decodeLevels(defs, []byte{1<<1 | 1, 0b00000111}, 3); err != nil || nulls || fmt.Sprint(defs) != "[1 1 1]" {
		t.Fatalf("decodeLevels of a padded group = %v, %v, %v", defs, nulls, err)
	}
	for _, bad := range [][]byte{{}, {0}, {4 << 1, 1}, {3 << 1, 2}, {1<<1 | 1}, {3 << 1}} {
		if _, _, err := decodeLevels(nil, bad, 3); err == nil {
			t.Errorf("decodeLevels(%x, 3) read levels", bad)
		}
	}
}

// TestEventIDHash2EqualsEventIDHash checks derive's two interleaved
// hashes against model.EventIDHash, for every pair of lengths up to 40
// (either the longer), empty values included.
func TestEventIDHash2EqualsEventIDHash(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	val := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	for la := range 41 {
		for lb := range 41 {
			a, b := val(la), val(lb)
			ha, hb := eventIDHash2(a, b)
			if wa, wb := model.EventIDHash(string(a)), model.EventIDHash(string(b)); ha != wa || hb != wb {
				t.Fatalf("eventIDHash2(%x, %x) = %x, %x, want %x, %x", a, b, ha, hb, wa, wb)
			}
		}
	}
}

// TestParseKindEqualsSchemas checks derive's parseKind against
// schemas.ParseKind: every kind's name, names of the same lengths that are
// no kind's, the unknown kind's name, and others.
func TestParseKindEqualsSchemas(t *testing.T) {
	vals := []string{"", "x", "unknown", "kind(9)", "Page_view", "page_View", "purchases", "purchas", "add_to_car_", strings.Repeat("p", 40)}
	for k := schemas.KindUnknown; !strings.HasPrefix(k.String(), "kind("); k++ {
		n := k.String()
		vals = append(vals, n, n[:len(n)-1]+"_", "_"+n[1:], n+" ")
	}
	for _, v := range vals {
		k, ok := parseKind(v)
		if wk, wok := schemas.ParseKind(v); k != wk || ok != wok {
			t.Errorf("parseKind(%q) = %v, %v, want %v, %v", v, k, ok, wk, wok)
		}
	}
}
