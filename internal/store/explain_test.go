package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"
)

func FuzzDecodeExplanation(f *testing.F) {
	f.Add([]byte{})
	f.Add(AppendExplanation(nil, &SessionExplanation{}))
	f.Add(AppendExplanation(nil, &SessionExplanation{
		Recent: []RecentItem{{Item: "a", TopCount: 7}, {Item: "bb", TopCount: -1}},
		From:   []ViewContribution{{Item: 3, Rank: 1, Count: 5, BatchCount: 2}},
	}))
	f.Add([]byte{1, 200, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeExplanation(b)
		// DecodeRecent accepts what DecodeExplanation accepts, with its
		// recent items.
		recent, rerr := DecodeRecent(b)
		if (err == nil) != (rerr == nil) {
			t.Fatalf("DecodeExplanation: %v, DecodeRecent: %v", err, rerr)
		}
		if err == nil && e != nil {
			want := make([]string, len(e.Recent))
			for i, r := range e.Recent {
				want[i] = r.Item
			}
			if !slices.Equal(recent, want) {
				t.Fatalf("DecodeRecent %q, want %q", recent, want)
			}
		}
		if err != nil || e == nil {
			return
		}
		// What decodes encodes back to the same bytes (varints are
		// canonical when written by AppendExplanation; a decoded value
		// written again must decode to itself).
		again, err := DecodeExplanation(AppendExplanation(nil, e))
		if err != nil {
			t.Fatalf("re-encoded %+v: %v", e, err)
		}
		if !slices.Equal(again.Recent, e.Recent) || !slices.Equal(again.From, e.From) {
			t.Fatalf("round trip: %+v != %+v", again, e)
		}
		if len(b) > 0 && !bytes.Equal(AppendExplanation(nil, again), AppendExplanation(nil, e)) {
			t.Fatal("encoding not stable")
		}
	})
}

// DecodeRecent reads the recent items alone, in rank order, in two
// allocations, and refuses what DecodeExplanation refuses.
func TestDecodeRecent(t *testing.T) {
	e := &SessionExplanation{
		Recent: []RecentItem{{Item: "i1", TopCount: 1 << 50}, {Item: "ünï", TopCount: 0}, {Item: "z", TopCount: 3}},
		From: []ViewContribution{{Item: 0, Rank: 0, Count: 1 << 50, BatchCount: 1<<50 - 3}, {Item: 19, Rank: 1, Count: 1},
			{Item: 2, Rank: 2, Count: 3}, {Item: 4, Rank: 2, Count: 1}},
	}
	b := AppendExplanation(nil, e)
	got, err := DecodeRecent(b)
	if err != nil || !slices.Equal(got, []string{"i1", "ünï", "z"}) {
		t.Fatalf("DecodeRecent: %q, %v", got, err)
	}
	if got, err := DecodeRecent(nil); got != nil || err != nil {
		t.Fatalf("empty: %q, %v", got, err)
	}
	for _, bad := range [][]byte{{2}, b[:len(b)-1], append(slices.Clone(b), 0), {1, 0xff, 0xff, 0xff, 0xff, 0x0f}} {
		if _, err := DecodeRecent(bad); err == nil {
			t.Errorf("%x decoded", bad)
		}
	}
	// An index past 1<<31, in a contribution it skips: refused too.
	var w ExplanationWriter
	w.Begin(1)
	w.Recent("r", 1)
	w.Contribution(1<<32, 1, 0)
	if _, err := DecodeRecent(w.End()); err == nil {
		t.Error("an index past 1<<31 decoded")
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = DecodeRecent(b) }); n > 2 {
		t.Errorf("DecodeRecent: %v allocations, want 2", n)
	}
}

func TestExplanationRoundTrip(t *testing.T) {
	e := &SessionExplanation{
		Recent: []RecentItem{{Item: "i1", TopCount: 1 << 50}, {Item: "ünï", TopCount: 0}},
		From:   []ViewContribution{{Item: 0, Rank: 0, Count: 1 << 50, BatchCount: 1<<50 - 3}, {Item: 19, Rank: 1, Count: 1}},
	}
	got, err := DecodeExplanation(AppendExplanation(nil, e))
	if err != nil || !slices.Equal(got.Recent, e.Recent) || !slices.Equal(got.From, e.From) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	if got, err := DecodeExplanation(nil); got != nil || err != nil {
		t.Fatalf("empty: %+v, %v", got, err)
	}
	b := AppendExplanation(nil, e)
	for _, bad := range [][]byte{{2}, b[:len(b)-1], append(slices.Clone(b), 0), {1, 0xff, 0xff, 0xff, 0xff, 0x0f}} {
		if _, err := DecodeExplanation(bad); err == nil {
			t.Errorf("%x decoded", bad)
		}
	}
	if err := e.Validate(20); err != nil {
		t.Fatal(err)
	}
	if err := e.Validate(19); err == nil {
		t.Fatal("contribution to item 19 of 19 accepted")
	}
	// The writer's encoding (the speed layer's) is AppendExplanation's.
	var w ExplanationWriter
	w.Begin(2)
	w.Recent("i1", 1<<50)
	w.Contribution(0, 1<<50, 1<<50-3)
	w.Recent("ünï", 0)
	w.Contribution(19, 1, 0)
	if got := w.End(); !bytes.Equal(got, b) {
		t.Fatalf("writer: %x, want %x", got, b)
	}
}

// The writer keeps one byte for a recent item's number of contributions and
// moves them along when the number needs more: its bytes are the format's
// (written here as the format says, field by field) for 0 to 20,000
// contributions a recent item, and they decode to what was written.
func TestExplanationWriterLongRanks(t *testing.T) {
	counts := []int{0, 1, 127, 128, 129, 300, 16383, 16384, 20000, 5}
	e := &SessionExplanation{}
	want := binary.AppendUvarint([]byte{explanationFormat}, uint64(len(counts)))
	var w ExplanationWriter
	for round := range 2 { // the second reuses the writer's buffer
		w.Begin(len(counts))
		for r, n := range counts {
			item := fmt.Sprintf("recent-%d", r)
			top := int64(1000 + r)
			w.Recent(item, top)
			if round == 0 {
				e.Recent = append(e.Recent, RecentItem{Item: item, TopCount: top})
				want = binary.AppendUvarint(want, uint64(len(item)))
				want = append(want, item...)
				want = binary.AppendVarint(want, top)
				want = binary.AppendUvarint(want, uint64(n))
			}
			for i := range n {
				c := ViewContribution{Item: i % 150, Rank: r, Count: int64(i*7 + r), BatchCount: int64(i * 3)}
				w.Contribution(c.Item, c.Count, c.BatchCount)
				if round == 0 {
					e.From = append(e.From, c)
					want = binary.AppendUvarint(want, uint64(c.Item))
					want = binary.AppendVarint(want, c.Count)
					want = binary.AppendVarint(want, c.BatchCount)
				}
			}
		}
		if got := w.End(); !bytes.Equal(got, want) {
			t.Fatalf("round %d: writer's %d bytes differ from the format's %d", round, len(got), len(want))
		}
	}
	if got := AppendExplanation(nil, e); !bytes.Equal(got, want) {
		t.Fatalf("AppendExplanation's %d bytes differ from the format's %d", len(got), len(want))
	}
	got, err := DecodeExplanation(want)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Recent, e.Recent) || !slices.Equal(got.From, e.From) {
		t.Fatalf("decoded %d recent items, %d contributions; want %d, %d", len(got.Recent), len(got.From), len(e.Recent), len(e.From))
	}
}

// appendUvarint and appendVarint write binary's bytes, around each length's
// bounds.
func TestAppendVarintIsBinarys(t *testing.T) {
	for shift := range 64 {
		for _, d := range []int64{-1, 0, 1} {
			u := uint64(1)<<shift + uint64(d)
			if got, want := appendUvarint(nil, u), binary.AppendUvarint(nil, u); !bytes.Equal(got, want) {
				t.Fatalf("uvarint %d: %x, want %x", u, got, want)
			}
			for _, v := range []int64{int64(u), -int64(u)} {
				if got, want := appendVarint(nil, v), binary.AppendVarint(nil, v); !bytes.Equal(got, want) {
					t.Fatalf("varint %d: %x, want %x", v, got, want)
				}
			}
		}
	}
}

// BenchmarkExplanationWriter writes the speed layer's explanation of one
// view: 10 recent items (ids of 6 to 12 bytes), each with 2 contributions
// of its row to the view's 20 items. cpu-ns/op is the process CPU per
// explanation.
func BenchmarkExplanationWriter(b *testing.B) {
	items := make([]string, 10)
	for r := range items {
		items[r] = fmt.Sprintf("item-%0*d", 1+r%7, r*37)
	}
	var w ExplanationWriter
	dst := make([]byte, 0, 1024)
	b.ReportAllocs()
	cpu0 := processCPUTime()
	for b.Loop() {
		w.Begin(len(items))
		for r, it := range items {
			w.Recent(it, int64(900+r))
			w.Contribution(2*r, int64(300-r), int64(200-r))
			w.Contribution(2*r+1, int64(150+r), int64(140))
		}
		dst = w.AppendEnd(dst[:0])
	}
	b.ReportMetric(float64((processCPUTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	if len(dst) == 0 {
		b.Fatal("nothing written")
	}
}

// processCPUTime is the process's user and system CPU time.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru) //nolint:errcheck
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchExplanationBytes is a view's explanation: 10 recent items, each
// contributing to 10 of 20 items.
func benchExplanationBytes() []byte {
	var w ExplanationWriter
	w.Begin(10)
	for r := range 10 {
		w.Recent(fmt.Sprintf("item-%d", 4711*31+r), 50)
		for it := r % 2; it < 20; it += 2 {
			w.Contribution(it, int64(10+r), int64(r))
		}
	}
	return w.End()
}

// DecodeRecent (what read-time scoring needs) against DecodeExplanation.
func BenchmarkDecodeRecent(b *testing.B) {
	x := benchExplanationBytes()
	b.Run("recent", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r, err := DecodeRecent(x); err != nil || len(r) != 10 {
				b.Fatal(r, err)
			}
		}
	})
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if e, err := DecodeExplanation(x); err != nil || len(e.Recent) != 10 {
				b.Fatal(e, err)
			}
		}
	})
}
