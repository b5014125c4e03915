package wire

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// strCol is a string column in Arrow's layout.
type strCol struct {
	offs  []int32 // where each row starts in data, and where the last ends
	data  []byte
	valid []byte // validity bitmap; nil while no row is null
	nulls int
}

func (c *strCol) rows() int { return len(c.offs) - 1 }

func (c *strCol) append(v []byte) {
	c.data = append(c.data, v...)
	c.offs = append(c.offs, int32(len(c.data)))
	if c.valid != nil {
		c.mark(true)
	}
}

func (c *strCol) appendNull() {
	if c.valid == nil {
		n := c.rows()
		c.valid = make([]byte, n/8+1, max(cap(c.offs)/8+1, n/8+1))
		for i := range n {
			c.valid[i/8] |= 1 << (i % 8)
		}
	}
	c.offs = append(c.offs, int32(len(c.data)))
	c.mark(false)
	c.nulls++
}

// mark sets the validity of the last row.
func (c *strCol) mark(ok bool) {
	i := c.rows() - 1
	if i/8 >= len(c.valid) {
		c.valid = append(c.valid, 0)
	}
	if ok {
		c.valid[i/8] |= 1 << (i % 8)
	}
}

// replay appends the rows of c to sb.
func (c *strCol) replay(sb *array.BinaryBuilder) {
	sb.Reserve(c.rows())
	sb.ReserveData(len(c.data))
	for i := range c.rows() {
		if c.valid != nil && c.valid[i/8]&(1<<(i%8)) == 0 {
			sb.AppendNull()
			continue
		}
		sb.Append(c.data[c.offs[i]:c.offs[i+1]])
	}
}

// reset empties c, keeping its memory.
func (c *strCol) reset() {
	c.offs, c.data, c.valid, c.nulls = append(c.offs[:0], 0), c.data[:0], nil, 0
}

// renew empties c with memory of its own, as large as it was: its buffers
// now belong to an array.
func (c *strCol) renew() {
	c.offs = append(make([]int32, 0, cap(c.offs)), 0)
	c.data = make([]byte, 0, cap(c.data))
	c.valid, c.nulls = nil, 0
}

// arrayData returns c as Arrow array data of type dt (strings).
func (c *strCol) arrayData(dt arrow.DataType) arrow.ArrayData {
	var valid *memory.Buffer
	if c.valid != nil {
		valid = memory.NewBufferBytes(c.valid)
	}
	return array.NewData(dt, c.rows(), []*memory.Buffer{valid,
		memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(c.offs)), memory.NewBufferBytes(c.data)}, nil, c.nulls, 0)
}
