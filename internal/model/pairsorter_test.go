package model

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestPairSorterEqualsSorted checks the pair sorter's totals (several
// chunks, counted as they are added) against a plain sort and reduce of
// every contribution, with totals that cancel to zero, for ids of one
// radix digit (packed contributions, counting sort) and wider, and with
// weights too wide to pack.
func TestPairSorterEqualsSorted(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	for _, nItems := range []int{2, 40, 300, 9000} {
		var all []kv
		for range 3 * minChunk {
			a, b := uint32(r.IntN(nItems)), uint32(r.IntN(nItems))
			if a == b {
				continue
			}
			if r.IntN(3) == 0 { // skewed towards low ids, as dictionaries number popular items first
				a, b = a%8, b%16
				if a == b {
					continue
				}
			}
			w := int64(r.IntN(7) - 3)
			if nItems == 300 && r.IntN(50) == 0 {
				// Weights too large for a packed contribution (38 bits
				// and more: added in pieces), of either sign.
				w *= 1<<46 + int64(r.IntN(1<<40))
			}
			all = append(all, kv{pairKey(a, b), w})
		}
		want := reduceKV(sortKV(slices.Clone(all), make([]kv, len(all)), nItems))
		t.Run(fmt.Sprintf("items=%d", nItems), func(t *testing.T) {
			s := newPairSorter(nItems)
			for _, p := range all {
				// Both orders of the ids: add normalizes them.
				if p.v&1 == 0 {
					s.add(uint32(p.k>>32), uint32(p.k), p.v)
				} else {
					s.add(uint32(p.k), uint32(p.k>>32), p.v)
				}
			}
			if got := s.result(); !slices.Equal(got, want) {
				t.Fatalf("%d totals, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
			}
		})
	}
}

// randomRun is a sorted, reduced run of n random contributions (weights
// -2..2, zero totals dropped) over keys × keys pairs.
func randomRun(r *rand.Rand, n, keys int) []kv {
	m := map[uint64]int64{}
	for range n {
		m[uint64(r.IntN(keys))<<32|uint64(r.IntN(keys))] += int64(r.IntN(5) - 2)
	}
	var out []kv
	for k, v := range m {
		if v != 0 {
			out = append(out, kv{k, v})
		}
	}
	slices.SortFunc(out, func(a, b kv) int { return cmpU64(a.k, b.k) })
	return out
}

// skewedRun returns a sorted run of the distinct keys among n drawn from
// [0, space) with a quadratic skew toward small ids (as popular items
// gather pairs), split into pair halves, with counts 1–3: the chunk totals
// the benchmarks merge.
func skewedRun(r *rand.Rand, n int, space float64) []kv {
	keys := make([]uint64, n)
	for i := range keys {
		x := r.Float64()
		idx := uint64(x * x * space)
		keys[i] = idx>>13<<32 | idx&(1<<13-1)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	out := make([]kv, len(keys))
	for i, k := range keys {
		out[i] = kv{k, int64(1 + i%3)}
	}
	return out
}

// TestMergeRuns checks the three-way merges (and the runs' fold) against
// pairwise merges.
func TestMergeRuns(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 2))
	run := func(n, keys int) []kv { return randomRun(r, n, keys) }
	urun := func(n, keys int) []userRec {
		var out []userRec
		for _, p := range run(n, keys) {
			out = append(out, newUserRec(p.k, userItem{last: p.v * 7, weight: p.v, purchased: p.v > 1}))
		}
		return out
	}
	for _, sizes := range [][]int{{0}, {5}, {0, 0, 0}, {100, 0, 50}, {300, 200, 100}, {50, 60, 70, 80, 90}, {1000, 10, 1000}} {
		var runs [][]kv
		var uruns [][]userRec
		for _, n := range sizes {
			runs, uruns = append(runs, run(n, 20)), append(uruns, urun(n, 20))
		}
		var want []kv
		var uwant []userRec
		for i := range runs {
			want = mergeKV(nil, want, runs[i], 1)
			uwant = mergeUserRecs(nil, uwant, uruns[i])
		}
		got := mergeKVRuns(slices.Clip(runs[0]), runs[1:]) // clipped: merged into a new array
		if len(got) == 0 && len(want) == 0 {
			got = want
		}
		if !slices.Equal(got, want) {
			t.Fatalf("runs of %v: pairs differ at %d", sizes, firstDiff(got, want))
		}
		ugot := mergeUserRuns(slices.Clip(uruns[0]), uruns[1:])
		if len(ugot) != len(uwant) || (len(ugot) > 0 && !slices.Equal(ugot, uwant)) {
			t.Fatalf("runs of %v: user entries differ (%d, want %d)", sizes, len(ugot), len(uwant))
		}
		// The totals merged in their own array, as a recompute in parts
		// merges them: the first run given room for all of them.
		total := 0
		for _, r := range runs {
			total += len(r)
		}
		acc := slices.Grow(slices.Clone(runs[0]), total)
		got = mergeKVRuns(acc, runs[1:])
		if len(got) > 0 && &got[0] != &acc[:1][0] {
			t.Fatalf("runs of %v: the totals were not merged in their own array", sizes)
		}
		if len(got) != len(want) || (len(got) > 0 && !slices.Equal(got, want)) {
			t.Fatalf("runs of %v: pairs merged in place differ at %d", sizes, firstDiff(got, want))
		}
		uacc := slices.Grow(slices.Clone(uruns[0]), total)
		ugot = mergeUserRuns(uacc, uruns[1:])
		if len(ugot) != len(uwant) || (len(ugot) > 0 && !slices.Equal(ugot, uwant)) {
			t.Fatalf("runs of %v: user entries merged in place differ (%d, want %d)", sizes, len(ugot), len(uwant))
		}
	}
}

// TestMergeKV2 checks the pair sorter's merges of a chunk's totals into
// the totals so far (mergeKV2BackEnd, mergeKV2Fwd) against mergeKV, in a
// new array and in the totals' own array (room left beside them: the
// totals at its start merged from the end down, at its end merged from
// the start up), with totals that cancel to zero and either run empty or
// longer; and the pair sorter's totals, merged alternately from either
// end, returned at the start of their array.
func TestMergeKV2(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 13))
	for _, sizes := range [][2]int{{0, 0}, {0, 40}, {40, 0}, {1, 1}, {300, 20}, {20, 300}, {500, 500}, {2000, 50}} {
		for _, keys := range []int{3, 20, 200} {
			a, b := randomRun(r, sizes[0], keys), randomRun(r, sizes[1], keys)
			want := mergeKV(nil, a, b, 1)
			room := len(a) + len(b) + r.IntN(3)
			for _, m := range []struct {
				name string
				fn   func(dst, a, b []kv) []kv
			}{{"back", mergeKV2BackEnd}, {"fwd", mergeKV2Fwd}} {
				got := m.fn(make([]kv, 0, room), a, b)
				if !slices.Equal(got, want) {
					t.Fatalf("%s, runs of %v over %d keys: differ at %d", m.name, sizes, keys, firstDiff(got, want))
				}
			}
			arr := make([]kv, room)
			got := mergeKV2BackEnd(arr, arr[:copy(arr, a)], b)
			if !slices.Equal(got, want) {
				t.Fatalf("back, runs of %v over %d keys, in place: differ at %d", sizes, keys, firstDiff(got, want))
			}
			if len(got) > 0 && &got[len(got)-1] != &arr[len(arr)-1] {
				t.Fatalf("back, runs of %v over %d keys: not at the array's end", sizes, keys)
			}
			clear(arr)
			got = mergeKV2Fwd(arr, arr[room-copy(arr[room-len(a):], a):], b)
			if !slices.Equal(got, want) {
				t.Fatalf("fwd, runs of %v over %d keys, in place: differ at %d", sizes, keys, firstDiff(got, want))
			}
			if len(got) > 0 && &got[0] != &arr[0] {
				t.Fatalf("fwd, runs of %v over %d keys: not at the array's start", sizes, keys)
			}
		}
	}
	// Four chunks of 40 items' pairs: the totals merged from either end
	// in turn, in one array, then returned at its start.
	defer func(c int) { minChunk = c }(minChunk)
	minChunk = 1000
	s := newPairSorter(40)
	arr := make([]kv, 0, 4000)
	s.accArr = arr[:cap(arr)]
	var want []kv
	for range 4 { // the last merge from the end down: moved by result
		run := randomRun(r, 1000, 40)
		var chunk []kv
		for _, p := range run {
			if p.k>>32 != p.k&(1<<32-1) {
				s.addPacked(uint32(min(p.k>>32, p.k&(1<<32-1))), uint32(max(p.k>>32, p.k&(1<<32-1))), p.v)
				chunk = append(chunk, kv{pairKey(uint32(p.k>>32), uint32(p.k)), p.v})
			}
		}
		slices.SortFunc(chunk, func(x, y kv) int { return cmpU64(x.k, y.k) })
		want = mergeKV(nil, want, reduceKV(chunk), 1)
		s.flush()
		if len(s.accArr) != cap(arr) || &s.accArr[0] != &arr[:1][0] {
			t.Fatalf("the totals (%d, %d) left their array", len(s.acc), len(s.accArr))
		}
	}
	got := s.result()
	if !slices.Equal(got, want) {
		t.Fatalf("pair sorter totals: %d, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
	if &got[0] != &arr[:1][0] {
		t.Fatalf("the totals were not returned at their array's start")
	}
}

// TestRunAccMergesBothWays checks an Accumulator's totals (runAcc) over
// parts of zero to three runs each — pair totals that cancel to zero, user
// entries whose values merge — against pairwise merges of every run, and
// that while its array has room the totals are merged in it, alternately
// from its end down and from its start up, with the result at the end and
// at the start in turn.
func TestRunAccMergesBothWays(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 11))
	run := func(n, keys int) []kv { return randomRun(r, n, keys) }
	merge2 := func(dst, a, b []kv) []kv { return mergeKV(dst, a, b, 1) }
	inPlace, atEnd, atStart := 0, 0, 0
	for trial := range 20 {
		keys := []int{3, 12, 40}[trial%3]
		var acc runAcc[kv]
		var uacc runAcc[userRec]
		var want []kv
		var uwant []userRec
		for part := range 12 {
			var runs [][]kv
			var uruns [][]userRec
			for range r.IntN(4) {
				x := run(r.IntN(60), keys)
				runs = append(runs, x)
				want = mergeKV(nil, want, x, 1)
				var u []userRec
				for _, p := range x {
					u = append(u, newUserRec(p.k, userItem{last: p.v * 7, weight: p.v, purchased: p.v > 1}))
				}
				uruns = append(uruns, u)
				uwant = mergeUserRecs(nil, uwant, u)
			}
			arr := acc.arr
			acc.add(runs, merge2, mergeKV3BackEnd, mergeKV3Fwd)
			uacc.add(uruns, mergeUserRecs, mergeUserRecs3BackEnd, mergeUserRecs3Fwd)
			if !slices.Equal(acc.run, want) && (len(acc.run) > 0 || len(want) > 0) {
				t.Fatalf("trial %d, part %d: totals differ at %d (%d, want %d)", trial, part, firstDiff(acc.run, want), len(acc.run), len(want))
			}
			if len(uacc.run) != len(uwant) || (len(uwant) > 0 && !slices.Equal(uacc.run, uwant)) {
				t.Fatalf("trial %d, part %d: user entries differ (%d, want %d)", trial, part, len(uacc.run), len(uwant))
			}
			if len(acc.run) > 0 && (&acc.run[0] == &acc.arr[0]) == (&acc.run[len(acc.run)-1] == &acc.arr[len(acc.arr)-1]) && len(acc.run) != len(acc.arr) {
				t.Fatalf("trial %d, part %d: the totals lie at neither end of their array", trial, part)
			}
			if len(arr) > 0 && len(acc.arr) > 0 && &arr[0] == &acc.arr[0] && len(runs) > 0 && len(acc.run) > 0 {
				inPlace++
				if &acc.run[len(acc.run)-1] == &acc.arr[len(acc.arr)-1] {
					atEnd++
				}
				if &acc.run[0] == &acc.arr[0] {
					atStart++
				}
			}
		}
	}
	if atEnd == 0 || atStart == 0 {
		t.Fatalf("%d merges in place: %d to the end, %d to the start; want both", inPlace, atEnd, atStart)
	}
	t.Logf("%d merges in place: %d to the end, %d to the start", inPlace, atEnd, atStart)
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func firstDiff(a, b []kv) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// BenchmarkAccumulatorTotals merges the pair totals of 10 parts of 2
// shard runs each, as a 10M-event recompute in parts does (runs of 540k
// pairs out of a skewed 4M-key space, totals of about 3.4M pairs): "moved"
// merges each part into the totals' array from the largest key down and
// moves the result back to the array's start (mergeKVRuns, the merge before
// runAcc), "inplace" merges into the array alternately from either end and
// leaves the result where it lands (runAcc). Reported per pair of the runs,
// wall and CPU.
func BenchmarkAccumulatorTotals(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 13))
	const parts, shards, runLen, space = 10, 2, 540_000, 1 << 22
	runs := make([][][]kv, parts)
	total := 0
	for p := range runs {
		for range shards {
			run := skewedRun(r, runLen, space)
			runs[p] = append(runs[p], run)
			total += len(run)
		}
	}
	merge2 := func(dst, a, b []kv) []kv { return mergeKV(dst, a, b, 1) }
	b.Run("moved", func(b *testing.B) {
		c0 := cpuTime()
		for b.Loop() {
			var acc []kv
			for _, part := range runs {
				acc = mergeKVRuns(acc, part)
			}
		}
		perEvent(b, c0, total, "pair")
	})
	b.Run("inplace", func(b *testing.B) {
		c0 := cpuTime()
		for b.Loop() {
			var acc runAcc[kv]
			for _, part := range runs {
				acc.add(part, merge2, mergeKV3BackEnd, mergeKV3Fwd)
			}
		}
		perEvent(b, c0, total, "pair")
	})
}

// BenchmarkPairSorterFlushes is one shard's pair sorter over a 1M-event
// part of the generated stream (BenchmarkBuildGenerated: 2.33M packed
// contributions a shard, ~295k distinct pairs a 1M chunk, 530k at the end):
// 2.4M contributions of 5,000 items, half of them over 100k hot pairs and
// half over 400k others, added and reduced to sorted totals over three
// chunks (each flush sorting a chunk and merging it into the totals so
// far), at the default chunk (minChunk) and at a quarter and half of it. It
// reports wall and CPU (process user+sys) ns per contribution.
func BenchmarkPairSorterFlushes(b *testing.B) {
	const n, nItems = 2_400_000, 5000
	r := rand.New(rand.NewPCG(7, 8))
	src := make([]kv, n)
	for i := range src {
		x := uint32(r.IntN(nItems))
		span := 80
		if i%2 == 0 {
			span = 20
		}
		y := (x + 1 + uint32(r.IntN(span))) % nItems
		src[i] = kv{pairKey(x, y), 1 + int64(r.IntN(3))}
	}
	def := minChunk
	defer func() { minChunk = def }()
	for _, chunk := range []int{def / 4, def / 2, def} {
		b.Run(fmt.Sprintf("chunk=%d", chunk), func(b *testing.B) {
			minChunk = chunk
			// The sorter's arrays, kept from run to run as a shard's
			// buffers are.
			var pbuf, ptmp []uint64
			var acc, out []kv
			pairs := 0
			var cpu time.Duration
			for b.Loop() {
				c0 := cpuTime()
				s := newPairSorter(nItems)
				s.pbuf, s.ptmp, s.accArr, s.out = pbuf[:0], ptmp, acc[:cap(acc)], out
				for _, p := range src {
					s.addPacked(uint32(p.k>>32), uint32(p.k), p.v)
				}
				s.flush()
				pbuf, ptmp, out = s.pbuf, s.ptmp, s.out
				acc = s.result()
				cpu += cpuTime() - c0
				pairs = len(acc)
			}
			b.ReportMetric(float64(pairs), "pairs")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/contribution")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/contribution")
		})
	}
}

// BenchmarkMergeChunkTotals merges a chunk's totals (300k pairs) into the
// totals so far (500k), as the pair sorter's second flush of a 1M-event
// part's shard does: "3back" with mergeKV3Back and an empty third run (the
// sorter's merge before mergeKV2*), "2back" and "2fwd" with the two-way
// merges the sorter uses in turn. Keys are drawn as BenchmarkAccumulatorTotals
// draws them. Reported in CPU ns per entry of the two runs.
func BenchmarkMergeChunkTotals(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 13))
	acc, chunk := skewedRun(r, 500_000, 1<<22), skewedRun(r, 300_000, 1<<22)
	dst := make([]kv, 0, len(acc)+len(chunk))
	for _, m := range []struct {
		name string
		fn   func()
	}{
		{"3back", func() { mergeKV3Back(dst, acc, chunk, nil) }},
		{"2back", func() { mergeKV2BackEnd(dst, acc, chunk) }},
		{"2fwd", func() { mergeKV2Fwd(dst, acc, chunk) }},
	} {
		b.Run(m.name, func(b *testing.B) {
			var cpu time.Duration
			for b.Loop() {
				c0 := cpuTime()
				m.fn()
				cpu += cpuTime() - c0
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*(len(acc)+len(chunk))), "cpu-ns/entry")
		})
	}
}
