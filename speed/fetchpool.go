package speed

import (
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/s2"
	"github.com/twmb/franz-go/pkg/kgo"
)

// fetchPool is the consuming client's memory pool (kgo.WithPools): the
// buffers fetched batches are decompressed into and the slices of records
// they are decoded into, used again once the loop has processed a poll and
// recycled its records (Layer.recycle). Without it each fetched batch was
// two fresh allocations, a fifth of the bytes the layer allocated at
// 50,000 events/s (BenchmarkLatency's heap profile: s2.Decode and kgo's
// record slices, 300 of 1,560 MB in a 20 s run): bytes that set how often
// the garbage collector runs, and a mark phase slows the loop (the
// slowest records of a run wait through one).
//
// Slices are kept by size class (powers of two), each class in a
// sync.Pool (emptied by the collector when unused). A record of a polled
// batch must not be used after it is recycled: the layer keeps no bytes of
// a record's value past its processing (ids are interned or copied by
// processor.applyDecoded; the event id is only hashed).
type fetchPool struct {
	bytes [poolClasses]sync.Pool // of *[]byte
	recs  [poolClasses]sync.Pool // of *[]kgo.Record
	// byteBoxes and recBoxes hold the emptied boxes of slices taken out,
	// so that a put allocates no box of its own.
	byteBoxes, recBoxes sync.Pool
	// gets and reused count the gets and those a pooled slice served
	// (tests, and what a reader of a heap profile may want to know).
	gets, reused atomic.Int64
}

// poolClasses bounds the size classes: 2^0 … 2^31 elements.
const poolClasses = 32

var (
	_ kgo.PoolDecompressBytes = (*fetchPool)(nil)
	_ kgo.PoolRecords         = (*fetchPool)(nil)
)

// ceilClass is the class whose slices hold n elements: ⌈log2 n⌉.
func ceilClass(n int) int {
	if n <= 1 {
		return 0
	}
	return bits.Len(uint(n - 1))
}

// floorClass is the class a slice of capacity c serves: ⌊log2 c⌋ (a slice
// of the class holds 2^class elements at least). -1 for none.
func floorClass(c int) int { return bits.Len(uint(c)) - 1 }

// GetDecompressBytes returns a buffer with room for src decompressed: a
// snappy block says its decoded length; other codecs are guessed at four
// times their compressed size (a decoder grows a buffer too small).
func (p *fetchPool) GetDecompressBytes(src []byte, codec kgo.CompressionCodecType) []byte {
	n := 4 * len(src)
	if codec == kgo.CodecSnappy {
		if l, err := s2.DecodedLen(src); err == nil {
			n = l
		}
	}
	c := ceilClass(max(n, 1))
	p.gets.Add(1)
	if c < poolClasses {
		if box, ok := p.bytes[c].Get().(*[]byte); ok {
			p.reused.Add(1)
			b := (*box)[:0]
			*box = nil
			p.byteBoxes.Put(box)
			return b
		}
	}
	return make([]byte, 0, 1<<min(c, poolClasses-1))
}

// PutDecompressBytes keeps b for a later get of its class (kgo zeroed it).
func (p *fetchPool) PutDecompressBytes(b []byte) {
	if c := floorClass(cap(b)); c >= 0 && c < poolClasses {
		box, ok := p.byteBoxes.Get().(*[]byte)
		if !ok {
			box = new([]byte)
		}
		*box = b[:0]
		p.bytes[c].Put(box)
	}
}

// GetRecords returns a slice of n records' room.
func (p *fetchPool) GetRecords(n int) []kgo.Record {
	c := ceilClass(n)
	p.gets.Add(1)
	if c < poolClasses {
		if box, ok := p.recs[c].Get().(*[]kgo.Record); ok {
			p.reused.Add(1)
			rs := (*box)[:0]
			*box = nil
			p.recBoxes.Put(box)
			return rs
		}
	}
	return make([]kgo.Record, 0, 1<<min(c, poolClasses-1))
}

// PutRecords keeps rs (every record recycled, so zeroed) for a later get.
func (p *fetchPool) PutRecords(rs []kgo.Record) {
	if c := floorClass(cap(rs)); c >= 0 && c < poolClasses {
		box, ok := p.recBoxes.Get().(*[]kgo.Record)
		if !ok {
			box = new([]kgo.Record)
		}
		*box = rs[:0]
		p.recs[c].Put(box)
	}
}
