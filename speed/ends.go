package speed

import (
	"context"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// endsEvery is how often the layer asks the broker for the end offsets of
// its partitions, the measure of its lag.
const endsEvery = time.Second

// watchEnds measures the lag (end offset minus position, per partition)
// against the broker's end offsets, listed every endsEvery, until ctx ends.
// The high watermark a fetch reports is as old as that fetch: behind a
// backlog the client holds fetched records for many seconds, and the lag
// computed from them alone showed a layer 1.6 million records behind as a
// few thousand behind, healthy. Nor does it wait for the poll being
// processed (which holds l.mu for seconds behind a backlog): it sets the lag
// from the positions as of the last poll, and the next poll's sync raises
// the high watermarks to the ends listed.
func (l *Layer) watchEnds(ctx context.Context) {
	adm := kadm.NewClient(l.admCl)
	t := time.NewTicker(endsEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, endsEvery)
		listed, err := adm.ListEndOffsets(cctx, l.cfg.Topic)
		cancel()
		if err != nil {
			continue // the fetches' high watermarks stand; log checks report a broker gone
		}
		ends := map[int32]int64{}
		listed.Each(func(o kadm.ListedOffset) {
			if o.Topic == l.cfg.Topic && o.Err == nil {
				ends[o.Partition] = o.Offset
			}
		})
		l.ends.Store(&ends)
		pos := l.positions.Load()
		if pos == nil {
			continue
		}
		var total int64
		for id, next := range pos.from {
			end, ok := ends[id]
			if !ok || next < 0 {
				continue
			}
			lag := max(end-next, 0)
			total += lag
			if cur := l.positions.Load(); cur != nil {
				if _, owned := cur.from[id]; owned { // not dropped meanwhile (its gauge is deleted then)
					l.m.lag.WithLabelValues(strconv.Itoa(int(id))).Set(float64(lag))
				}
			}
		}
		if total > l.m.lagNow.Load() {
			l.m.lagNow.Store(total) // only raised: the next sync has the positions since
		}
	}
}

// raiseHighWatermarks raises the high watermarks of the owned partitions to
// the end offsets watchEnds listed last. Called with l.mu held.
func (l *Layer) raiseHighWatermarks() {
	ends := l.ends.Load()
	if ends == nil {
		return
	}
	for id, ps := range l.proc.parts {
		if end, ok := (*ends)[id]; ok && end > ps.hw {
			ps.hw = end
		}
	}
}
