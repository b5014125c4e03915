package speed

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// endsEvery is how often the layer asks the broker for the end offsets of
// its partitions, the measure of its lag.
const endsEvery = time.Second

// watchEnds keeps each owned partition's high watermark (the lag is the
// high watermark minus the position) no older than endsEvery, until ctx
// ends. The high watermark a fetch reports is as old as that fetch: behind a
// backlog the client holds fetched records for many seconds, and the lag
// computed from them alone showed a layer 1.6 million records behind as a
// few thousand behind, healthy.
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
		ends, err := adm.ListEndOffsets(cctx, l.cfg.Topic)
		cancel()
		if err != nil {
			continue // the fetches' high watermarks stand; log checks report a broker gone
		}
		l.mu.Lock()
		for id, ps := range l.proc.parts {
			if o, ok := ends.Lookup(l.cfg.Topic, id); ok && o.Err == nil && o.Offset > ps.hw {
				ps.hw = o.Offset
			}
		}
		l.mu.Unlock()
	}
}
