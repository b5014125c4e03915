package batch

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/metadata"
)

// rawStrings reads a flat, at most optional, BYTE_ARRAY column chunk whose
// data pages are all PLAIN-encoded (no dictionary page: rawEligible) straight
// from its pages' bytes into a pageChunk's string column: each value's bytes
// appended to the chunk's buffer from the page, with no parquet.ByteArray
// slice header made per value and read back, as ReadBatchInPage does. Both
// page versions are read, their definition levels (RLE/bit-packed hybrid,
// bit width 1) included: a null row's value is "", as in readChunk's
// ReadBatchInPage path, which every other column chunk still takes
// (TestRawStringsEqualReadBatch).
type rawStrings struct {
	pr     file.PageReader
	maxDef int16
	name   string
	// The current page: its definition levels (1: a value; only when
	// maxDef is 1 and the page has nulls), the rows left, the next row's
	// index into defs and the values not read yet.
	defs  []uint8
	nulls bool
	rows  int
	row   int
	vals  []byte
}

// rawEligible reports whether column chunk cc (a flat BYTE_ARRAY column of
// at most one definition level, as footerOf checks) can be read by
// rawStrings: no dictionary page, and nothing but PLAIN values and RLE
// levels in its encodings.
func rawEligible(cc *metadata.ColumnChunkMetaData) bool {
	if cc.HasDictionaryPage() {
		return false
	}
	for _, e := range cc.Encodings() {
		if e != parquet.Encodings.Plain && e != parquet.Encodings.RLE {
			return false
		}
	}
	return true
}

// next loads the next data page.
func (s *rawStrings) next() error {
	if len(s.vals) > 0 {
		return fmt.Errorf("column %s: %d bytes of values past its page's rows", s.name, len(s.vals))
	}
	if !s.pr.Next() {
		if err := s.pr.Err(); err != nil {
			return err
		}
		return fmt.Errorf("column %s: no page left", s.name)
	}
	var data []byte
	var levels int
	switch p := s.pr.Page().(type) {
	case *file.DataPageV2:
		if parquet.Encoding(p.Encoding()) != parquet.Encodings.Plain {
			return fmt.Errorf("column %s: a data page in %s", s.name, parquet.Encoding(p.Encoding()))
		}
		data = p.Data()
		rl, dl := int(p.RepetitionLevelByteLen()), int(p.DefinitionLevelByteLen())
		if rl != 0 || rl+dl > len(data) || dl < 0 || p.NumRows() != p.NumValues() {
			return fmt.Errorf("column %s: a malformed page (levels %d+%d bytes of %d, %d rows, %d values)",
				s.name, rl, dl, len(data), p.NumRows(), p.NumValues())
		}
		s.rows = int(p.NumValues())
		if s.maxDef > 0 {
			levels = dl
		} else if dl != 0 {
			return fmt.Errorf("column %s: definition levels in a required column", s.name)
		}
	case *file.DataPageV1:
		if parquet.Encoding(p.Encoding()) != parquet.Encodings.Plain {
			return fmt.Errorf("column %s: a data page in %s", s.name, parquet.Encoding(p.Encoding()))
		}
		data = p.Data()
		s.rows = int(p.NumValues())
		if s.maxDef > 0 {
			if p.DefinitionLevelEncoding() != parquet.Encodings.RLE {
				return fmt.Errorf("column %s: definition levels in %s", s.name, p.DefinitionLevelEncoding())
			}
			if len(data) < 4 {
				return fmt.Errorf("column %s: a page of %d bytes", s.name, len(data))
			}
			n := binary.LittleEndian.Uint32(data)
			if uint64(n) > uint64(len(data)-4) {
				return fmt.Errorf("column %s: %d bytes of levels in a page of %d", s.name, n, len(data))
			}
			data, levels = data[4:], int(n)
		}
	default:
		return fmt.Errorf("column %s: a %T", s.name, p)
	}
	s.row, s.nulls, s.vals = 0, false, data[levels:]
	if s.maxDef > 0 {
		var err error
		if s.defs, s.nulls, err = decodeLevels(s.defs, data[:levels], s.rows); err != nil {
			return fmt.Errorf("column %s: %w", s.name, err)
		}
	}
	return nil
}

// decodeLevels decodes the n definition levels of bit width 1 in levels
// (the RLE/bit-packed hybrid) into defs, reused, and reports whether any
// is 0 (a null).
func decodeLevels(defs []uint8, levels []byte, n int) ([]uint8, bool, error) {
	defs = slices.Grow(defs[:0], n)
	nulls := false
	for len(defs) < n {
		h, k := binary.Uvarint(levels)
		if k <= 0 || h == 0 {
			return defs, false, fmt.Errorf("bad definition levels at %d of %d", len(defs), n)
		}
		levels = levels[k:]
		if h&1 == 0 { // a run of one value, in one byte
			if len(levels) < 1 || levels[0] > 1 || h>>1 > uint64(n-len(defs)) {
				return defs, false, fmt.Errorf("bad run of definition levels at %d of %d", len(defs), n)
			}
			v := levels[0]
			levels = levels[1:]
			nulls = nulls || v == 0
			for range h >> 1 {
				defs = append(defs, v)
			}
			continue
		}
		groups := h >> 1 // bit-packed, of 8 values: one byte each at bit width 1
		if groups > uint64(len(levels)) {
			return defs, false, fmt.Errorf("bad bit-packed definition levels at %d of %d", len(defs), n)
		}
		for _, b := range levels[:groups] {
			for j := 0; j < 8 && len(defs) < n; j++ { // the last group's padding left out
				v := b >> j & 1
				nulls = nulls || v == 0
				defs = append(defs, v)
			}
		}
		levels = levels[groups:]
	}
	return defs, nulls, nil
}

// plainValue splits the first PLAIN byte-array value (a 4-byte little-endian
// length, then the bytes) off v: the value and the rest of the page's values;
// false if v does not hold a whole value (valueErr says why). Small enough to
// inline into read's loops.
func plainValue(v []byte) (val, rest []byte, ok bool) {
	if len(v) < 4 {
		return nil, nil, false
	}
	l := binary.LittleEndian.Uint32(v)
	if uint64(l) > uint64(len(v)-4) {
		return nil, nil, false
	}
	return v[4 : 4+l], v[4+l:], true
}

// valueErr is the error of a page's values v that plainValue refused.
func (s *rawStrings) valueErr(v []byte) error {
	if len(v) < 4 {
		return fmt.Errorf("column %s: page values end early", s.name)
	}
	return fmt.Errorf("column %s: a value of %d bytes past its page's end", s.name, binary.LittleEndian.Uint32(v))
}

// read appends the next n rows' values to buf, their ends to ends (of at
// least n entries, counted from the start of buf), and returns buf.
func (s *rawStrings) read(n int, buf []byte, ends []uint32) ([]byte, error) {
	for r := 0; r < n; {
		if s.row == s.rows {
			if err := s.next(); err != nil {
				return buf, err
			}
			continue
		}
		k := min(n-r, s.rows-s.row)
		v := s.vals
		if !s.nulls {
			for i := range k {
				val, rest, ok := plainValue(v)
				if !ok {
					return buf, s.valueErr(v)
				}
				buf, v = append(buf, val...), rest
				ends[r+i] = uint32(len(buf))
			}
		} else {
			for i, d := range s.defs[s.row : s.row+k] {
				if d != 0 {
					val, rest, ok := plainValue(v)
					if !ok {
						return buf, s.valueErr(v)
					}
					buf, v = append(buf, val...), rest
				}
				ends[r+i] = uint32(len(buf))
			}
		}
		if len(buf) > math.MaxUint32 {
			return buf, fmt.Errorf("column %s: %d bytes in %d rows", s.name, len(buf), n)
		}
		s.vals = v
		s.row += k
		r += k
	}
	return buf, nil
}
