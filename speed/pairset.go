package speed

import (
	"iter"
	"math/bits"
)

// pairSet is partition.pub: the changed pairs' keys (pubKey, never 0: a
// pair's two ids differ) in an open-addressing table with linear probing.
// It replaces a map[uint64]struct{} because a member that publishes its
// deltas adds to it for every pair contribution: one probe where the map's
// assignment took 0.57 of 0.88 s of addPair (BenchmarkApplyPolls with
// publication tracked, CPU profile). The zero value is an empty set.
type pairSet struct {
	keys  []uint64 // len is a power of two (or 0); 0 is empty
	n     int
	shift uint // 64 - log2(len(keys))
}

// len returns the number of keys.
func (s *pairSet) len() int { return s.n }

// add adds key (not 0).
func (s *pairSet) add(key uint64) {
	if 4*(s.n+1) > 3*len(s.keys) {
		s.grow()
	}
	mask := uint64(len(s.keys) - 1)
	for i := (key * 0x9e3779b97f4a7c15) >> s.shift; ; i = (i + 1) & mask {
		switch s.keys[i] {
		case key:
			return
		case 0:
			s.keys[i] = key
			s.n++
			return
		}
	}
}

// grow doubles the table (at least 64 keys) and reinserts the keys.
func (s *pairSet) grow() {
	old := s.keys
	n := max(64, 2*len(old))
	s.keys = make([]uint64, n)
	s.shift = uint(64 - bits.TrailingZeros(uint(n)))
	s.n = 0
	for _, k := range old {
		if k != 0 {
			s.add(k)
		}
	}
}

// all yields every key, in table order.
func (s *pairSet) all() iter.Seq[uint64] {
	return func(yield func(uint64) bool) {
		if s.n == 0 {
			return
		}
		for _, k := range s.keys {
			if k != 0 && !yield(k) {
				return
			}
		}
	}
}

// clear removes every key, keeping the table.
func (s *pairSet) clear() {
	if s.n > 0 {
		clear(s.keys)
		s.n = 0
	}
}
