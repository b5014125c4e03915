package speed

import (
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"sync"
	"testing"
	"time"
)

// traceSend is a produced record, for writeTrace.
type traceSend struct {
	part int32
	off  int64
	key  string
	at   time.Time
}

// writeTrace writes BenchmarkLatency's timeline to path, times in ms from
// the first produce: "S" lines are the layer's loop iterations (loopStep:
// poll start, polled, processed, done, records, their oldest and newest
// produce timestamps, flushes, views, scoring ms, ms waiting for the
// previous write, views marked for rescoring, lag, GC cycles so far,
// whether it committed); "G" lines GC pauses (end, ms); "L" lines a record's
// produce time and latency (every 5th record, and every one over 50 ms).
func writeTrace(b *testing.B, path string, start time.Time, steps []loopStep, mu *sync.Mutex, sends []traceSend, bySession map[string][]viewWrite) {
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
	// one line per 10th record: sent time and latency
	for i, s := range sends {
		ws := bySession[s.key]
		k := sort.Search(len(ws), func(j int) bool { return ws[j].offset >= s.off })
		if k == len(ws) {
			continue
		}
		if i%5 == 0 || ws[k].at.Sub(s.at) > 50*time.Millisecond {
			fmt.Fprintf(f, "L %.2f %.2f %d %d\n", ms(s.at), float64(ws[k].at.Sub(s.at))/1e6, s.part, s.off)
		}
	}
}
