package speed

import (
	"bufio"
	"fmt"
	"io"
	"sync"
	"time"
)

// LoopTraceHeader is the first line WriteLoopTrace writes: the columns of
// its "S" lines.
const LoopTraceHeader = "# S pollStart polled processed done recs flushes views scoreMs awaitMs rescored lag gc commit"

// WriteLoopTrace makes every layer started after it (in this process) write
// each iteration of its consuming loop to w, one line each: "S", the poll's
// start, when it returned, when its records were processed and when the
// iteration ended (Unix ms), then the records polled, the flushes and views
// they wrote, the milliseconds spent scoring and waiting for the previous
// view write, the views marked for rescoring, the lag after it, the GC
// cycles so far and whether it committed. It is a diagnostic (`lambdarec dev
// --speed-trace`): what the loop waits for and what it does, at the cost of
// a few clock reads and a line per poll. stop ends the tracing and returns
// the first write error; it does not close w. The lines are buffered and
// written to w when an iteration ends a second or more after the last
// write. Not safe to call while a layer is starting.
func WriteLoopTrace(w io.Writer) (stop func() error) {
	bw := bufio.NewWriter(w)
	var (
		mu      sync.Mutex
		err     error
		on      = true
		flushed time.Time
	)
	_, err = fmt.Fprintln(bw, LoopTraceHeader)
	ms := func(t time.Time) float64 { return float64(t.UnixMicro()) / 1e3 }
	loopTraceHook = func(s loopStep) {
		mu.Lock()
		defer mu.Unlock()
		if !on || err != nil {
			return
		}
		_, err = fmt.Fprintf(bw, "S %.3f %.3f %.3f %.3f %d %d %d %.3f %.3f %d %d %d %v\n",
			ms(s.PollStart), ms(s.Polled), ms(s.Processed), ms(s.Done), s.Recs, s.Flushes, s.Views,
			float64(s.ScoreDur)/1e6, float64(s.AwaitDur)/1e6, s.Rescored, s.Lag, s.GCCycles, s.Commit)
		if err == nil && s.Done.Sub(flushed) >= time.Second {
			// Readable while the layer runs, within a second (or one
			// iteration, when they are longer), at one write a second.
			err = bw.Flush()
			flushed = s.Done
		}
	}
	return func() error {
		loopTraceHook = nil
		mu.Lock()
		defer mu.Unlock()
		on = false
		if ferr := bw.Flush(); err == nil {
			err = ferr
		}
		return err
	}
}
