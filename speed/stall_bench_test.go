package speed

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// stallInjector stalls the layer's loop for a fixed time at fixed intervals
// (BenchmarkLatency with SPEED_BENCH_STALL=DUR, every SPEED_BENCH_STALL_EVERY,
// default 2s) and measures how the layer recovers from each stall: a
// disturbance (a GC mark phase, the other core's work) leaves it behind, and
// what matters for the tail is how soon the backlog drains. Off by default.
//
// The stall is a sleep in loopTraceHook, which the loop calls at the end of
// each iteration with no lock held: nothing is polled, processed or flushed
// meanwhile (a view write already in flight completes). The drain ends at
// the first poll after the stall that reads nothing older than drainedAge
// (or nothing at all): every record produced up to drainedAge before it was
// processed by then. Per drain it notes the time from the stall's end, the
// measured process's CPU over it, the records processed and the views
// written (fresh and rescored) on the way.
type stallInjector struct {
	dur, every time.Duration

	mu     sync.Mutex
	start  time.Time // stalls from here on (zero: none yet)
	stop   bool      // no stalls after the production ended
	next   time.Time
	active bool
	end    time.Time
	cpu0   time.Duration
	recs   int
	views  int
	resc   int
	drains []stallDrain
}

// stallDrain is how one stall's backlog drained.
type stallDrain struct {
	took        time.Duration
	cpu         time.Duration
	recs, views int
	rescored    int
}

// drainedAge is how old the oldest record of a poll may be for the layer to
// count as caught up (about twice the p50 at 50k/s).
const drainedAge = 5 * time.Millisecond

// benchStall reads SPEED_BENCH_STALL and SPEED_BENCH_STALL_EVERY; nil when
// off.
func benchStall(b *testing.B) *stallInjector {
	v := os.Getenv("SPEED_BENCH_STALL")
	if v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		b.Fatalf("SPEED_BENCH_STALL=%q: want a positive duration", v)
	}
	every := 2 * time.Second
	if v := os.Getenv("SPEED_BENCH_STALL_EVERY"); v != "" {
		every, err = time.ParseDuration(v)
		if err != nil || every <= d {
			b.Fatalf("SPEED_BENCH_STALL_EVERY=%q: want a duration longer than the stall", v)
		}
	}
	return &stallInjector{dur: d, every: every}
}

// begin starts stalling after: the first stall comes then.
func (s *stallInjector) begin(after time.Time) {
	s.mu.Lock()
	s.start, s.next = after, after
	s.mu.Unlock()
}

// end stops further stalls (a drain under way is still measured).
func (s *stallInjector) halt() {
	s.mu.Lock()
	s.stop = true
	s.mu.Unlock()
}

// step is called with each loop iteration, on the loop's goroutine.
func (s *stallInjector) step(tb testing.TB, st loopStep) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.start.IsZero() {
		return
	}
	if s.active {
		if st.Recs == 0 || st.PollStart.Sub(st.OldestTS) <= drainedAge {
			s.drains = append(s.drains, stallDrain{
				took: st.PollStart.Sub(s.end), cpu: processCPU(tb) - s.cpu0,
				recs: s.recs, views: s.views, rescored: s.resc,
			})
			s.active = false
		} else {
			s.recs += st.Recs
			s.views += st.Views
			s.resc += st.Rescored
			return
		}
	}
	now := time.Now()
	if s.stop || now.Before(s.next) {
		return
	}
	time.Sleep(s.dur)
	s.end = time.Now()
	s.cpu0 = processCPU(tb)
	s.active, s.recs, s.views, s.resc = true, 0, 0, 0
	s.next = s.end.Add(s.every)
}

// report adds the drains' medians to b's metrics: stall_drain_ms (stall end
// to caught up), stall_drain_cpu_ms (the measured process's CPU meanwhile),
// stall_drain_cpu_µs/rec (that CPU per record processed meanwhile),
// stall_drain_views/rec (views written per such record) and
// stall_drain_rescored/rec, and stall_drains (how many drains ended).
func (s *stallInjector) report(b *testing.B) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b.ReportMetric(float64(len(s.drains)), "stall_drains")
	if len(s.drains) == 0 {
		return
	}
	med := func(f func(d stallDrain) float64) float64 {
		v := make([]float64, len(s.drains))
		for i, d := range s.drains {
			v[i] = f(d)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	b.ReportMetric(med(func(d stallDrain) float64 { return float64(d.took.Microseconds()) / 1e3 }), "stall_drain_ms")
	b.ReportMetric(med(func(d stallDrain) float64 { return float64(d.cpu.Microseconds()) / 1e3 }), "stall_drain_cpu_ms")
	per := func(n, recs int) float64 { return float64(n) / float64(max(recs, 1)) }
	b.ReportMetric(med(func(d stallDrain) float64 { return per(int(d.cpu.Microseconds()), d.recs) }), "stall_drain_cpu_µs/rec")
	b.ReportMetric(med(func(d stallDrain) float64 { return per(d.views, d.recs) }), "stall_drain_views/rec")
	b.ReportMetric(med(func(d stallDrain) float64 { return per(d.rescored, d.recs) }), "stall_drain_rescored/rec")
	if os.Getenv("SPEED_BENCH_STALL_LOG") != "" {
		for _, d := range s.drains {
			fmt.Fprintf(os.Stderr, "stall drain: %v cpu %v recs %d views %d rescored %d\n", d.took, d.cpu, d.recs, d.views, d.rescored)
		}
	}
}
