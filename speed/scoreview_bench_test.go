package speed

import (
	"testing"
	"time"
)

// BenchmarkScoreView is one session view as the processing goroutine scores
// it (scoreView: the recent items' ids, the scoring from the maintained
// rows, the explanation), over 4,000 live sessions of the 300k-record state
// of BenchmarkScore, in turn; with explanations and without. cpu-ns/op (the
// process's user+system CPU per view) is the figure to compare on a shared
// machine.
func BenchmarkScoreView(b *testing.B) {
	for _, explain := range []bool{true, false} {
		name := "explain"
		if !explain {
			name = "noexplain"
		}
		b.Run(name, func(b *testing.B) {
			recs := benchStream(b)
			batch := benchBatch(b, recs)
			lim := defaultLimits()
			lim.noExplain = !explain
			lim.viewItems = 20 // the default of speed.view_items
			p := ownedProcessor(b, lim, batch)
			ts := time.Now()
			var ss []*session
			seen := map[*session]bool{}
			for _, r := range recs[:300_000] {
				s, err := p.record(r.part, r.off, ts, r.value)
				if err != nil {
					b.Fatal(err)
				}
				if s != nil && s.ms.Len() >= 2 && len(ss) < 4000 && !seen[s] {
					seen[s] = true
					ss = append(ss, s)
				}
			}
			p.appendViews(nil, ts)
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU(b)
			i := 0
			for b.Loop() {
				s := ss[i%len(ss)]
				i++
				s.dirty = true
				p.score(s, ts)
				clear(p.views)
				p.views = p.views[:0]
			}
			b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
