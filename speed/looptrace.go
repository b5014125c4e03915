package speed

import (
	rtmetrics "runtime/metrics"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// loopStep is one iteration of the consuming loop, for the latency
// benchmark's timeline (SPEED_BENCH_TRACE).
type loopStep struct {
	PollStart, Polled, Processed, Done time.Time
	Recs                               int
	OldestTS, NewestTS                 time.Time // the records' (produce) timestamps
	Flushes                            int
	Views                              int
	ScoreDur                           time.Duration
	AwaitDur                           time.Duration
	Rescored                           int
	Lag                                int64
	GCCycles                           uint64
	Commit                             bool
}

// loopTraceHook, when set before a layer runs (benchmarks only), receives
// each loop iteration.
var loopTraceHook func(loopStep)

var gcSample = []rtmetrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}

func gcCycles() uint64 {
	rtmetrics.Read(gcSample)
	return gcSample[0].Value.Uint64()
}

// polled notes the poll's records.
func (s *loopStep) polled(fs kgo.Fetches) {
	s.Polled = time.Now()
	fs.EachRecord(func(r *kgo.Record) {
		s.Recs++
		if s.OldestTS.IsZero() || r.Timestamp.Before(s.OldestTS) {
			s.OldestTS = r.Timestamp
		}
		if r.Timestamp.After(s.NewestTS) {
			s.NewestTS = r.Timestamp
		}
	})
}

// done ends the step and hands it to the hook.
func (s *loopStep) done(l *Layer) {
	s.Done = time.Now()
	s.Lag = l.m.lagNow.Load()
	s.GCCycles = gcCycles()
	l.trace(*s)
}
