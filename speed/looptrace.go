package speed

import (
	rtmetrics "runtime/metrics"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// loopStep is one iteration of the consuming loop, for the latency
// benchmark's timeline (SPEED_BENCH_TRACE, looptrace_test.go). Flushes and
// afterPoll add to Layer.step always (a few field updates, under the layer's
// lock); the loop times the poll and hands the step on only while
// loopTraceHook is set.
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

// done ends the step, adds what the flushes recorded (st) and hands it to
// the hook.
func (s *loopStep) done(l *Layer, st loopStep) {
	s.Done = time.Now()
	s.Flushes, s.Views, s.ScoreDur, s.AwaitDur = st.Flushes, st.Views, st.ScoreDur, st.AwaitDur
	s.Rescored, s.Commit = st.Rescored, st.Commit
	s.Lag = l.m.lagNow.Load()
	s.GCCycles = gcCycles()
	l.trace(*s)
}
