package speed

import (
	"bytes"
	"context"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/store"
)

// TestBenchFirstWrites: each send is matched to the first write of its own
// session at or past its offset, among writes of several sessions
// interleaved, a rewrite at the same offset (a rescoring) and a session
// never written; benchLatencies drops the warm-up and the unmatched.
func TestBenchFirstWrites(t *testing.T) {
	a, b, c := sessionHash("session-a"), sessionHash("session-b"), sessionHash("session-c")
	sends := []benchSend{
		{part: 0, off: 0, at: 100, key: a},
		{part: 1, off: 0, at: 110, key: b},
		{part: 0, off: 1, at: 120, key: a},
		{part: 0, off: 2, at: 130, key: a},
		{part: 1, off: 1, at: 140, key: b},
		{part: 2, off: 0, at: 150, key: c}, // never written
		{part: 0, off: 5, at: 160, key: a}, // past a's last write
	}
	writes := []viewWrite{
		{key: b, offset: 0, at: 1000},
		{key: a, offset: 0, at: 1001},
		{key: a, offset: 0, at: 1002}, // rescored, same offset
		{key: b, offset: 1, at: 1003},
		{key: a, offset: 2, at: 1004}, // covers offsets 1 and 2
		{key: a, offset: 2, at: 1005},
	}
	got := firstWrites(sends, slices.Clone(writes))
	want := []int64{1001, 1000, 1004, 1004, 1003, 0, 0}
	if !slices.Equal(got, want) {
		t.Fatalf("firstWrites = %v, want %v", got, want)
	}
	lat := benchLatencies(sends, got, 110)
	wantLat := []float64{(1003 - 140) / 1e6, (1000 - 110) / 1e6, (1004 - 130) / 1e6, (1004 - 120) / 1e6}
	slices.Sort(wantLat)
	if !slices.Equal(lat, wantLat) {
		t.Fatalf("benchLatencies = %v, want %v", lat, wantLat)
	}
	if sessionHash("session-a") != sessionHash([]byte("session-a")) || a == b {
		t.Fatal("sessionHash differs between string and bytes, or collides")
	}

	// At scale, against a plain scan of the writes in the order they were
	// made: 20 sessions, many rewrites of one offset.
	r := rand.New(rand.NewPCG(1, 2))
	keys := make([]uint64, 20)
	next := make([]int64, len(keys))
	for i := range keys {
		keys[i] = sessionHash("s" + strconv.Itoa(i))
	}
	writes, sends = nil, nil
	for i := range 20_000 {
		k := r.IntN(len(keys))
		next[k] += int64(r.IntN(2)) // often the same offset again
		writes = append(writes, viewWrite{key: keys[k], offset: next[k], at: int64(i + 1)})
		if i%10 == 0 {
			k := r.IntN(len(keys))
			sends = append(sends, benchSend{off: int64(r.IntN(int(next[k]) + 3)), key: keys[k]})
		}
	}
	got = firstWrites(sends, slices.Clone(writes))
	for i, s := range sends {
		want := int64(0)
		for _, w := range writes {
			if w.key == s.key && w.offset >= s.off {
				want = w.at
				break
			}
		}
		if got[i] != want {
			t.Fatalf("send %d (offset %d): first write at %d, want %d", i, s.off, got[i], want)
		}
	}
}

// TestBenchLatencyWriterSpills: the latency writer returns every view
// written, in order, across several spills of its buffer and the tail it
// still holds, and counts them; without a file it only counts.
func TestBenchLatencyWriterSpills(t *testing.T) {
	w := newLatencyWriter(t, t.TempDir())
	ctx := context.Background()
	n := 2*latencyChunk + 100
	var want []viewWrite
	for i := 0; i < n; {
		k := min(1+i%7, n-i)
		vs := make([]store.SessionView, k)
		for j := range vs {
			vs[j] = store.SessionView{SessionID: "s" + strconv.Itoa((i+j)%97), Offset: int64(i + j), UpdatedAt: time.Now()}
			want = append(want, viewWrite{key: sessionHash(vs[j].SessionID), offset: int64(i + j)})
		}
		before := time.Now().UnixNano()
		if err := w.UpsertSessions(ctx, vs); err != nil {
			t.Fatal(err)
		}
		for j := range k {
			want[i+j].at = before // checked as a lower bound below
		}
		i += k
	}
	got, err := w.all()
	if err != nil {
		t.Fatal(err)
	}
	if w.count() != n || len(got) != n {
		t.Fatalf("count %d, %d writes returned, want %d", w.count(), len(got), n)
	}
	for i := range got {
		if got[i].key != want[i].key || got[i].offset != want[i].offset || got[i].at < want[i].at || got[i].at > time.Now().UnixNano() {
			t.Fatalf("write %d = %+v, want %+v (at no earlier)", i, got[i], want[i])
		}
	}
	// all again (the tail already spilled) returns the same.
	again, err := w.all()
	if err != nil || !slices.Equal(again, got) {
		t.Fatalf("second all: %d writes, err %v", len(again), err)
	}

	c := &latencyWriter{Memory: store.NewMemory()}
	if err := c.UpsertSessions(ctx, []store.SessionView{{SessionID: "x", Offset: 1, UpdatedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if c.count() != 1 {
		t.Fatalf("counting writer: %d", c.count())
	}
	if _, err := c.all(); err == nil {
		t.Fatal("counting writer returned writes")
	}
}

// TestBenchChildSource runs BenchmarkLatency's child (broker and producer
// in another process) for a short stream: it reports as many sends as
// records and ends that add up to them, CPU of its own, and sends whose
// partition, offset and key hash are where a plain consumer of its broker
// finds each record, with send times inside the sending window.
func TestBenchChildSource(t *testing.T) {
	const rate, n = 5000, 4000
	src := newChildSource(t, rate, n)
	ends, sent, start, dur := src.produce()
	if sent != n {
		t.Fatalf("sent %d, want %d", sent, n)
	}
	total := int64(0)
	for _, e := range ends {
		total += e
	}
	if total != n || len(ends) != benchParts {
		t.Fatalf("ends %v: %d records in %d partitions, want %d in %d", ends, total, len(ends), n, benchParts)
	}
	if cpu := src.cpu(); cpu <= 0 || cpu > time.Minute {
		t.Fatalf("child CPU %v", cpu)
	}
	sends := src.sends()
	if len(sends) != n {
		t.Fatalf("%d sends, want %d", len(sends), n)
	}
	type at struct {
		part int32
		off  int64
	}
	key := map[at]uint64{}
	for i, s := range sends {
		if s.at < start.UnixNano() || s.at > start.Add(dur).UnixNano() {
			t.Fatalf("send %d at %d, outside [%d, +%v]", i, s.at, start.UnixNano(), dur)
		}
		if i > 0 && s.at < sends[i-1].at {
			t.Fatalf("send %d before send %d", i, i-1)
		}
		key[at{s.part, s.off}] = s.key
	}
	if len(key) != n {
		t.Fatalf("%d distinct (partition, offset) among %d sends", len(key), n)
	}
	readTopic(t, src.topic().addr(), src.topic().topic, n, func(r *kgo.Record) {
		if k, ok := key[at{r.Partition, r.Offset}]; !ok || k != sessionHash(r.Key) {
			t.Errorf("record %d/%d (key %q): send key %x found %v, want %x", r.Partition, r.Offset, r.Key, k, ok, sessionHash(r.Key))
		}
	})
	src.close()
}

// TestBenchSendsRoundTrip: the sends file reads back as written, and a
// truncated one is refused.
func TestBenchSendsRoundTrip(t *testing.T) {
	sends := []benchSend{{0, 0, 1, 2}, {5, 1 << 40, -3, ^uint64(0)}, {-1, 7, 1<<62 + 5, 9}}
	var buf bytes.Buffer
	if err := writeSends(&buf, sends); err != nil {
		t.Fatal(err)
	}
	got, err := readSends(buf.Bytes())
	if err != nil || !slices.Equal(got, sends) {
		t.Fatalf("readSends = %v, %v; want %v", got, err, sends)
	}
	if _, err := readSends(buf.Bytes()[:buf.Len()-1]); err == nil {
		t.Fatal("truncated sends file read")
	}
}

// benchSink keeps TestBenchGCStats's allocation on the heap.
var benchSink []byte

// TestBenchGCStats: the runtime/metrics names exist (a wrong name reads as
// KindBad and panics), a forced cycle counts and a 1 MiB allocation counts
// as an object and 1 MiB.
func TestBenchGCStats(t *testing.T) {
	g0 := readGCStats()
	runtime.GC()
	g1 := readGCStats()
	benchSink = make([]byte, 1<<20+len(t.Name())) // one object of 1 MiB at least
	g2 := readGCStats()
	if g1.cycles <= g0.cycles || g1.live == 0 || g1.gcCPU < g0.gcCPU || g2.allocs <= g0.allocs || g2.allocBytes < g0.allocBytes+1<<20 {
		t.Fatalf("GC stats %+v then %+v, %+v", g0, g1, g2)
	}
}

// TestBenchFillChild: BenchmarkThroughput's child holds exactly the stream
// this process generates from the same start (the batch this process
// computes is over the records the layer consumes), every record where it
// was generated, with ends that say so, and reports its CPU.
func TestBenchFillChild(t *testing.T) {
	const n = 3000
	start := time.Unix(0, time.Now().Add(-70*time.Minute).UnixNano())
	want := genStream(t, n, start, 100)
	src := newFillChild(t, n, start)
	tt := src.topic()
	if got := sendEnds(sendsOf(want)); !maps.Equal(tt.endOffsets(), got) {
		t.Fatalf("child's ends %v, want %v", tt.endOffsets(), got)
	}
	c0 := src.cpuTotal()
	byPos := map[[2]int64]*benchRecord{}
	for i := range want {
		byPos[[2]int64{int64(want[i].part), want[i].off}] = &want[i]
	}
	readTopic(t, tt.addr(), tt.topic, n, func(r *kgo.Record) {
		w := byPos[[2]int64{int64(r.Partition), r.Offset}]
		if w == nil || !bytes.Equal(w.key, r.Key) || !bytes.Equal(w.value, r.Value) {
			t.Errorf("record %d/%d differs from the one generated there", r.Partition, r.Offset)
		}
	})
	if c1 := src.cpuTotal(); c0 <= 0 || c1 < c0 {
		t.Fatalf("child CPU %v then %v", c0, c1)
	}
	src.close()
}

// readTopic reads the first n records of topic on the broker at addr from
// the start, calling fn on each; it fails t unless all n come within 30 s.
func readTopic(t *testing.T, addr, topic string, n int, fn func(*kgo.Record)) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for got := 0; got < n; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records", got, n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			fn(r)
		})
	}
}

// sendsOf places recs as benchSends (for sendEnds).
func sendsOf(recs []benchRecord) []benchSend {
	out := make([]benchSend, len(recs))
	for i, r := range recs {
		out[i] = benchSend{part: r.part, off: r.off}
	}
	return out
}
