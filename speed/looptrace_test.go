package speed

import (
	"cmp"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeTrace writes BenchmarkLatency's timeline to path, times in ms from
// the first produce: "A" is when the collection forced before the window
// returned (negative: before the first produce) and its number, gctrace's
// "gc N" (the anchor of GODEBUG=gctrace=1's times), "S" lines are the layer's loop iterations (loopStep: poll
// start, polled, processed, done, records, their oldest and newest
// produce timestamps, flushes, views, scoring ms, ms waiting for the
// previous write, views marked for rescoring, lag, GC cycles so far,
// whether it committed); "G" lines GC pauses (end, ms); "L" lines a record's
// produce time and latency (every 5th record, and every one over 50 ms).
//
// written is when each send's view was written (Unix ns, 0 if never:
// firstWrites).
func writeTrace(b *testing.B, path string, start time.Time, forcedGC gcAnchor, steps []loopStep, mu *sync.Mutex, sends []benchSend, written []int64) {
	mu.Lock()
	defer mu.Unlock()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	ms := func(t time.Time) float64 {
		if t.IsZero() {
			return -1
		}
		return float64(t.Sub(start)) / 1e6
	}
	fmt.Fprintln(f, "# step pollStart polled processed done recs oldestTS newestTS flushes views scoreMs awaitMs rescored lag gc commit")
	fmt.Fprintf(f, "A %.2f %d\n", ms(forcedGC.at), forcedGC.cycle)
	for i, s := range steps {
		fmt.Fprintf(f, "S %d %.2f %.2f %.2f %.2f %d %.2f %.2f %d %d %.2f %.2f %d %d %d %v\n", i, ms(s.PollStart), ms(s.Polled), ms(s.Processed), ms(s.Done),
			s.Recs, ms(s.OldestTS), ms(s.NewestTS), s.Flushes, s.Views, float64(s.ScoreDur)/1e6, float64(s.AwaitDur)/1e6, s.Rescored, s.Lag, s.GCCycles, s.Commit)
	}
	var gs debug.GCStats
	gs.PauseQuantiles = nil
	debug.ReadGCStats(&gs)
	for i := range gs.PauseEnd {
		if gs.PauseEnd[i].Before(start) {
			continue
		}
		fmt.Fprintf(f, "G %.2f %.3f\n", ms(gs.PauseEnd[i]), float64(gs.Pause[i])/1e6)
	}
	// one line per 5th record: sent time and latency
	var waits []traceWait
	for i, s := range sends {
		if written[i] == 0 {
			continue
		}
		sent, wrote := time.Unix(0, s.at), time.Unix(0, written[i])
		if i%5 == 0 || wrote.Sub(sent) > 50*time.Millisecond {
			fmt.Fprintf(f, "L %.2f %.2f %d %d\n", ms(sent), float64(wrote.Sub(sent))/1e6, s.part, s.off)
		}
		if sent.Sub(start) >= time.Second { // past the benchmark's warm-up
			waits = append(waits, traceWait{sent, wrote})
		}
	}
	for _, line := range tailSummary(steps, waits) {
		fmt.Fprintf(f, "# %s\n", line)
		b.Log(line)
	}
}

// gcAnchor is when the collection forced before BenchmarkLatency's window
// returned, and the number of cycles completed then.
type gcAnchor struct {
	at    time.Time
	cycle uint64
}

// traceWait is a record's wait: from its produce call to its view's write.
type traceWait struct{ sent, written time.Time }

// tailSummary says what the slowest records (at or past the 99th
// percentile of waits) waited through, against all records: the share of
// them during whose wait a GC cycle began, the longest loop iteration that
// overlapped their wait, and the share of rescorings among the views
// scored meanwhile. A cause of the tail shows as a share far above the
// base rate of all records.
func tailSummary(steps []loopStep, waits []traceWait) []string {
	if len(waits) == 0 || len(steps) < 2 {
		return nil
	}
	lat := func(w traceWait) time.Duration { return w.written.Sub(w.sent) }
	sorted := slices.SortedFunc(slices.Values(waits), func(a, b traceWait) int { return cmp.Compare(lat(a), lat(b)) })
	p99 := lat(sorted[(len(sorted)-1)*99/100])
	// For a wait, the steps it overlapped: from the last one done before it
	// began to the first one done after it ended.
	overlap := func(w traceWait) (lo, hi int) {
		lo = max(sort.Search(len(steps), func(i int) bool { return !steps[i].Done.Before(w.sent) })-1, 0)
		hi = min(sort.Search(len(steps), func(i int) bool { return !steps[i].Done.Before(w.written) }), len(steps)-1)
		return lo, hi
	}
	type agg struct {
		n, gc             int
		longest           []float64
		views, rescorings int
	}
	var all, slow agg
	for _, w := range waits {
		lo, hi := overlap(w)
		longest, views, resc := 0.0, 0, 0
		for i := lo + 1; i <= hi; i++ {
			longest = max(longest, float64(steps[i].Done.Sub(steps[i].PollStart))/1e6)
			views += steps[i].Views
			resc += steps[i].Rescored
		}
		gc := steps[hi].GCCycles > steps[lo].GCCycles
		for _, a := range []*agg{&all, &slow} {
			if a == &slow && lat(w) < p99 {
				continue
			}
			a.n++
			if gc {
				a.gc++
			}
			a.longest = append(a.longest, longest)
			a.views += views
			a.rescorings += resc
		}
	}
	med := func(xs []float64) float64 { slices.Sort(xs); return xs[len(xs)/2] }
	line := func(name string, a agg) string {
		return fmt.Sprintf("tail %s: %d records, a GC cycle began while %.0f%% of them waited, longest loop iteration meanwhile (median) %.1f ms, rescorings %.0f%% of the views scored meanwhile",
			name, a.n, 100*float64(a.gc)/float64(a.n), med(a.longest), 100*float64(a.rescorings)/float64(max(a.views, 1)))
	}
	return []string{
		fmt.Sprintf("tail: p99 wait %.1f ms", float64(p99)/1e6),
		line("slowest (>= p99)", slow),
		line("all", all),
	}
}

// TestTailSummary: on a synthetic timeline where one loop iteration is long
// and a GC cycle began in it, the slowest records are those that waited
// through it, and the summary says so against the base rate.
func TestTailSummary(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	var steps []loopStep
	gc := uint64(3)
	for i := range 100 { // 10 ms iterations; the 50th takes 100 ms and a GC cycle begins in it
		start, dur := i*10, 10
		if i >= 50 {
			start += 90
		}
		if i == 50 {
			dur, gc = 100, gc+1
		}
		steps = append(steps, loopStep{PollStart: at(start), Done: at(start + dur), Views: 10, Rescored: 1, GCCycles: gc})
	}
	var waits []traceWait
	for ms := 5; ms < 1080; ms += 5 {
		w := 8 * time.Millisecond
		if ms > 500 && ms < 600 { // waited through the long iteration
			w = 600*time.Millisecond - time.Duration(ms)*time.Millisecond + 5*time.Millisecond
		}
		waits = append(waits, traceWait{at(ms), at(ms).Add(w)})
	}
	lines := tailSummary(steps, waits)
	if len(lines) != 3 {
		t.Fatalf("summary %q", lines)
	}
	for i, want := range []string{"tail: p99 wait ", "tail slowest (>= p99): 4 records, a GC cycle began while 100% of them waited, longest loop iteration meanwhile (median) 100.0 ms, rescorings 10%",
		"tail all: 215 records, a GC cycle began while 19% of them waited, longest loop iteration meanwhile (median) 10.0 ms"} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d: %q, want it to begin with %q", i, lines[i], want)
		}
	}
}
