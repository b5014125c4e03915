package model

import (
	"math/bits"
	"slices"
)

// kv is one pair contribution or total: key = pairKey(lo, hi), value = count.
type kv struct {
	k uint64
	v int64
}

// maxRadixBits is the widest digit of the radix sorts: ids are sorted in as
// few passes as digits of at most this many bits allow, the digits equally
// wide (13-bit item ids: one pass of 13 bits, not two of 11 and 2).
const maxRadixBits = 13

// bitsFor returns the bits ids below n need (at least 1).
func bitsFor(n int) int { return max(bits.Len32(uint32(max(n, 1)-1)), 1) }

// radixDigit is one pass of an LSD radix sort: the key bits [shift,
// shift+width).
type radixDigit struct {
	shift, width uint
}

// appendDigits appends the digits of an id of b bits placed at bit base.
func appendDigits(ds []radixDigit, b int, base uint) []radixDigit {
	passes := (b + maxRadixBits - 1) / maxRadixBits
	w := (b + passes - 1) / passes
	for s := 0; s < b; s += w {
		ds = append(ds, radixDigit{shift: base + uint(s), width: uint(min(w, b-s))})
	}
	return ds
}

// sortKV sorts a by key with an LSD radix sort over the bits that keys of
// ids below nItems use (the first id in bits [32, 32+b), the second in bits
// [0, b)): radixSortPacked. tmp must be at least as long as a; the sorted
// result is a or tmp, returned.
func sortKV(a, tmp []kv, nItems int) []kv {
	b := uint(bitsFor(nItems))
	return radixSortPacked(a, tmp, func(e *kv) uint64 { return e.k }, b, b)
}

// radixSortPacked sorts a by key(e) = first<<32 | second, where first
// needs hiBits bits and second loBits, with an LSD radix sort of the two
// ids packed as one number of hiBits+loBits bits, first<<loBits | second,
// in as few equally wide digits of at most maxRadixBits as it takes (16-bit
// ids: three passes of 11 bits, not four of 8); the counts of every digit
// are taken in one read of a before the scatters, and a digit whose values
// are all equal is not scattered. tmp must be at least as long as a; the
// sorted result is a or tmp, returned.
func radixSortPacked[T any](a, tmp []T, key func(*T) uint64, hiBits, loBits uint) []T {
	tmp = tmp[:len(a)]
	if len(a) < 2 {
		return a
	}
	total := hiBits + loBits
	passes := (total + maxRadixBits - 1) / maxRadixBits
	w := (total + passes - 1) / passes
	lowMask := uint64(1)<<loBits - 1
	packed := func(e *T) uint64 { k := key(e); return k>>32<<loBits | k&lowMask }
	mask := uint64(1)<<w - 1
	counts := make([]int, passes<<w)
	for i := range a {
		p := packed(&a[i])
		for d := range passes {
			counts[d<<w|uint((p>>(d*w))&mask)]++
		}
	}
	for d := range passes {
		cnt := counts[d<<w : (d+1)<<w]
		sh := d * w
		if cnt[(packed(&a[0])>>sh)&mask] == len(a) {
			continue // one value: the order stays
		}
		sum := 0
		for i, c := range cnt {
			cnt[i] = sum
			sum += c
		}
		for i := range a {
			x := (packed(&a[i]) >> sh) & mask
			tmp[cnt[x]] = a[i]
			cnt[x]++
		}
		a, tmp = tmp, a
	}
	return a
}

// reduceKV sums adjacent equal keys of sorted a in place and drops zeros.
func reduceKV(a []kv) []kv {
	out := a[:0]
	for i := 0; i < len(a); {
		k, v := a[i].k, a[i].v
		j := i + 1
		for ; j < len(a) && a[j].k == k; j++ {
			v += a[j].v
		}
		if v != 0 {
			out = append(out, kv{k, v})
		}
		i = j
	}
	return out
}

// reduceScratch holds the pair sorter's counting sort's arrays, reused
// from chunk to chunk.
type reduceScratch struct {
	start []int    // where each lo bucket starts, then its fill position
	sum   []int64  // the current bucket's totals, by hi
	seen  []uint64 // the current bucket's his, a bit each
}

// size makes the scratch ready for ids below nItems.
func (sc *reduceScratch) size(nItems int) {
	if len(sc.sum) < nItems {
		sc.start = make([]int, nItems+1)
		sc.sum = make([]int64, nItems)
		sc.seen = make([]uint64, (nItems+63)/64)
	}
}

// mergeKV merges sorted, reduced a and sign·b into dst (reused), summing
// equal keys and dropping zeros.
func mergeKV(dst, a, b []kv, sign int64) []kv {
	dst = dst[:0]
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i].k < b[j].k:
			dst = append(dst, a[i])
			i++
		case a[i].k > b[j].k:
			dst = append(dst, kv{b[j].k, sign * b[j].v})
			j++
		default:
			if v := a[i].v + sign*b[j].v; v != 0 {
				dst = append(dst, kv{a[i].k, v})
			}
			i++
			j++
		}
	}
	dst = append(dst, a[i:]...)
	for ; j < len(b); j++ {
		dst = append(dst, kv{b[j].k, sign * b[j].v})
	}
	return dst
}

// pairSorter accumulates pair contributions and reduces them to sorted totals
// in chunks, so memory is bounded by the distinct pairs, not the
// contributions.
type pairSorter struct {
	nItems   int
	limit    int // flush when the chunk holds this many
	buf, tmp []kv
	acc      []kv // the totals so far, at the start or the end of accArr
	accArr   []kv // acc's array, its whole capacity
	scratch  reduceScratch
	// count: ids of one digit (bitsFor(nItems) ≤ maxRadixBits). The chunk
	// is then packed: each contribution one word, lo<<(64-b) | hi<<(64-2b)
	// | weight in the low 64-2b bits (two's complement; b = bitsFor(nItems),
	// so at least 38 bits), in pbuf (ptmp its scatter's buffer, out its
	// totals), half the bytes of a kv to append, scatter and read back — a
	// 10M-event build adds 46M of them. add counts the contributions by
	// first id into scratch.start[lo+1], and flush sorts them by a counting
	// sort (sortReducePacked).
	count      bool
	pbuf, ptmp []uint64
	out        []kv
	idBits     uint  // b
	wMax       int64 // the largest weight a packed contribution holds (-wMax-1 the least)
}

// minChunk is the least chunk (a variable: tests make it small).
var minChunk = 1 << 20

func newPairSorter(nItems int) *pairSorter {
	s := &pairSorter{nItems: nItems, limit: minChunk}
	if b := bitsFor(nItems); b <= maxRadixBits {
		s.count = true
		s.idBits = uint(b)
		s.wMax = 1<<(63-2*b) - 1
		s.scratch.size(nItems)
		clear(s.scratch.start)
	}
	return s
}

func (s *pairSorter) add(a, b uint32, w int64) {
	if a > b {
		a, b = b, a
	}
	if s.count {
		// A weight too large to pack goes in pieces that sum to it (none
		// with kind weights of at most maxWeight, the pair rule's and
		// summed over a session's capped events: far below 2³⁷).
		for w > s.wMax || w < -s.wMax {
			piece := s.wMax
			if w < 0 {
				piece = -s.wMax
			}
			s.addPacked(a, b, piece)
			w -= piece
		}
		s.addPacked(a, b, w)
		return
	}
	s.buf = append(s.buf, kv{uint64(a)<<32 | uint64(b), w})
	if len(s.buf) >= s.limit {
		s.flush()
	}
}

// addPacked adds a contribution of lo a, hi b and weight w (|w| ≤ wMax) to
// the packed chunk.
func (s *pairSorter) addPacked(a, b uint32, w int64) {
	ib := s.idBits
	s.pbuf = append(s.pbuf, uint64(a)<<(64-ib)|uint64(b)<<(64-2*ib)|uint64(w)&(1<<(64-2*ib)-1))
	s.scratch.start[a+1]++
	if len(s.pbuf) >= s.limit {
		s.flush()
	}
}

// room makes the packed chunk take n more contributions without a flush or
// a regrowth (buildShard then appends them to pbuf itself, counting each
// by its first id in scratch.start[lo+1], as addPacked does): it flushes
// first when n more would pass the limit.
func (s *pairSorter) room(n int) {
	if len(s.pbuf)+n > s.limit {
		s.flush()
	}
	if cap(s.pbuf)-len(s.pbuf) < n {
		s.pbuf = slices.Grow(s.pbuf, n)
	}
}

// sortReducePacked returns the packed chunk's totals, sorted by key, zeros
// dropped, as reduceKV(sortKV(...)) returns them, by one pass of a counting
// sort instead of the radix sort's two: the contributions are scattered by
// lo (counted by addPacked), then each lo's are summed into an array
// indexed by hi (nItems long: in cache) whose touched entries are then
// read in order from a bitmap. The totals are in s.out's array.
func (s *pairSorter) sortReducePacked() []kv {
	a := s.pbuf
	if cap(s.ptmp) < len(a) {
		s.ptmp = make([]uint64, len(a), cap(a))
	}
	tmp := s.ptmp[:len(a)]
	nItems := s.nItems
	start := s.scratch.start[:nItems+1]
	for i := 1; i <= nItems; i++ {
		start[i] += start[i-1]
	}
	ib := s.idBits
	loShift, hiShift := 64-ib, 64-2*ib
	for _, x := range a {
		lo := x >> loShift
		tmp[start[lo]] = x
		start[lo]++
	}
	sum, seen := s.scratch.sum, s.scratch.seen
	hiMask := uint64(1)<<ib - 1
	out := s.out[:0]
	from := 0
	for lo := range nItems {
		to := start[lo]
		if from == to {
			continue
		}
		minW, maxW := len(seen), -1
		for _, x := range tmp[from:to] {
			h := uint32(x>>hiShift) & uint32(hiMask)
			w := int(h >> 6)
			seen[w] |= 1 << (h & 63)
			sum[h] += int64(x<<(2*ib)) >> (2 * ib)
			minW, maxW = min(minW, w), max(maxW, w)
		}
		from = to
		base := uint64(lo) << 32
		for w := minW; w <= maxW; w++ {
			word := seen[w]
			seen[w] = 0
			for word != 0 {
				h := w<<6 + bits.TrailingZeros64(word)
				word &= word - 1
				if v := sum[h]; v != 0 {
					out = append(out, kv{base | uint64(h), v})
					sum[h] = 0
				}
			}
		}
	}
	s.out = out
	return out
}

func (s *pairSorter) flush() {
	var sorted []kv
	if s.count {
		if len(s.pbuf) == 0 {
			return
		}
		sorted = s.sortReducePacked()
		clear(s.scratch.start[:s.nItems+1]) // the next chunk's counts
		s.pbuf = s.pbuf[:0]
	} else {
		if len(s.buf) == 0 {
			return
		}
		if cap(s.tmp) < len(s.buf) {
			s.tmp = make([]kv, len(s.buf))
		}
		sorted = reduceKV(sortKV(s.buf, s.tmp, s.nItems))
		s.buf = s.buf[:0]
	}
	// The totals are merged in their own array while it has room, from
	// the largest key down when they are at its start (then at its end),
	// from the smallest up when they are at its end (then at its start):
	// no copy of them back to the start after each merge (result moves
	// them there once). Else they are merged into a new array sized for
	// the merge with a quarter to spare: append would regrow it by copies.
	need := len(s.acc) + len(sorted)
	switch {
	case len(s.acc) == 0 && cap(s.accArr) >= need:
		s.acc = append(s.accArr[:0], sorted...)
	case cap(s.accArr) < need:
		s.accArr = make([]kv, need+need/4)
		s.acc = mergeKV2Fwd(s.accArr, s.acc, sorted)
	case &s.acc[0] == &s.accArr[0]:
		s.acc = mergeKV2BackEnd(s.accArr, s.acc, sorted)
	default:
		s.acc = mergeKV2Fwd(s.accArr, s.acc, sorted)
	}
	// Grow the chunk with the totals so the merges stay amortized.
	s.limit = max(minChunk, len(s.acc)/2)
}

// result returns the sorted totals, at the start of their array (a shard
// keeps that array as its totals' buffer, and Accumulator.Add recognizes
// it when the merged totals take it: rangedAcc.holds), and releases
// the buffers.
func (s *pairSorter) result() []kv {
	s.flush()
	acc := s.acc
	if len(acc) > 0 && &acc[0] != &s.accArr[0] {
		acc = s.accArr[:copy(s.accArr, acc)]
	}
	*s = pairSorter{}
	return acc
}

// mergeKV2BackEnd merges two sorted, reduced runs into dst (whose capacity
// holds the two), summing equal keys and dropping zeros, from the largest
// key down, as mergeKV3BackEnd(dst, a, b, nil) does with a two-way loop,
// leaving the merged run at the end of dst's capacity, where it returns it:
// a may be the start of dst's array.
func mergeKV2BackEnd(dst, a, b []kv) []kv {
	dst = dst[:cap(dst)]
	w := len(dst)
	i, j := len(a)-1, len(b)-1
	for i >= 0 && j >= 0 {
		x, y := a[i], b[j]
		switch {
		case x.k > y.k:
			w--
			dst[w] = x
			i--
		case x.k < y.k:
			w--
			dst[w] = y
			j--
		default:
			if v := x.v + y.v; v != 0 {
				w--
				dst[w] = kv{x.k, v}
			}
			i--
			j--
		}
	}
	// One of them is left (copy handles a's overlap with dst).
	w -= i + 1
	copy(dst[w:], a[:i+1])
	w -= j + 1
	copy(dst[w:], b[:j+1])
	return dst[w:]
}

// mergeKV2Fwd is mergeKV2BackEnd from the smallest key up, the merged run
// at the start of dst: a may be the end of dst's array (dst[:cap(dst)]'s
// last len(a) entries).
func mergeKV2Fwd(dst, a, b []kv) []kv {
	dst = dst[:cap(dst)]
	w := 0
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		x, y := a[i], b[j]
		switch {
		case x.k < y.k:
			dst[w] = x
			w++
			i++
		case x.k > y.k:
			dst[w] = y
			w++
			j++
		default:
			if v := x.v + y.v; v != 0 {
				dst[w] = kv{x.k, v}
				w++
			}
			i++
			j++
		}
	}
	w += copy(dst[w:], a[i:])
	w += copy(dst[w:], b[j:])
	return dst[:w]
}
