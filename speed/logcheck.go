package speed

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/lambdarec/lambdarec/internal/kafka"
)

// checkEvery is how often the layer checks its log while nothing goes
// wrong; a fetch error checks at once (at most once a second).
const checkEvery = 30 * time.Second

// Faults returns the owned partitions the layer stopped because their log
// no longer continues what it holds: the topic was recreated (another topic
// ID than at start), or the log ends at or before the served batch's
// boundary or the layer's position (the broker lost its data).
func (l *Layer) Faults() []kafka.LogFault { return l.faults.List() }

// noteSeen records how far each owned partition was consumed. It is kept
// when the partition is dropped: a log is never shorter than what was read
// from it, so after a rebalance that follows a broker's loss of its data
// (the group's offsets lost with it) the layer still knows the log went
// back. Called with l.mu held.
func (l *Layer) noteSeen() {
	for id, ps := range l.proc.parts {
		if ps.next > l.seen[id] {
			l.seen[id] = ps.next
		}
	}
}

// batchTopicID returns the topic ID of the served batch's boundary.
func (l *Layer) batchTopicID() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.proc.batch == nil {
		return ""
	}
	return l.proc.batch.TopicID
}

// bound returns the served batch's boundary of partition id.
func (l *Layer) bound(id int32) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.proc.bound[id]
	return b, ok
}

// startTopicID returns the topic ID of the events topic now, "" when the
// broker does not say.
func (l *Layer) startTopicID(ctx context.Context) string {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := kafka.DescribeLog(cctx, kadm.NewClient(l.admCl), l.cfg.Topic)
	if err != nil {
		l.log.Warn("describe the events log at start", "err", err)
		return ""
	}
	return v.TopicID
}

// checkLog compares the broker's log of each owned partition with what the
// layer holds of it — the served batch's boundary (records at or below it
// are counted as covered) and its own position — and the topic ID with the
// one seen at start. A partition whose log does not continue them is
// stopped and reported, never consumed as if it did: a new log's offsets
// would compare as covered by the boundary and its records would be
// silently left out of the deltas. A partition whose log is back resumes.
// Urgent checks (after a fetch error) run at most once a second, the
// others every checkEvery or after an assignment.
func (l *Layer) checkLog(ctx context.Context, urgent bool) {
	since := time.Since(l.lastCheck)
	if since < time.Second || (!urgent && since < checkEvery && !l.checkDue.Load()) {
		return
	}
	l.lastCheck = time.Now()
	l.checkDue.Store(false)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := kafka.DescribeLog(cctx, kadm.NewClient(l.admCl), l.cfg.Topic)
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("check the events log", "err", err)
		}
		return
	}
	if l.topicID == "" {
		l.topicID = v.TopicID
	}
	l.mu.Lock()
	l.noteSeen()
	held := make(map[int32]int64, len(l.proc.parts))
	for id := range l.proc.parts {
		h := int64(-1)
		if b, ok := l.proc.bound[id]; ok {
			h = b
		}
		if n, ok := l.seen[id]; ok && n-1 > h {
			h = n - 1
		}
		held[id] = h
	}
	l.mu.Unlock()
	faults := v.Check(l.topicID, held, false, time.Now())
	if bid := l.batchTopicID(); bid != "" && v.TopicID != "" && bid != v.TopicID && len(faults) == 0 {
		// The served batch's boundary belongs to another log than the
		// one read now (the topic was recreated before this layer started).
		covered := map[int32]int64{}
		for id, h := range held {
			if _, ok := l.bound(id); ok {
				covered[id] = h
			}
		}
		faults = v.Check(bid, covered, false, time.Now())
	}
	faulted := map[int32]bool{}
	var stop, resume []int32
	for _, f := range faults {
		faulted[f.Partition] = true
		if l.faults.Set(f) {
			stop = append(stop, f.Partition)
		}
	}
	for _, f := range l.faults.List() {
		switch _, owned := held[f.Partition]; {
		case !owned:
			l.faults.Forget(f.Partition)
		case !faulted[f.Partition] && l.faults.Clear(f.Partition):
			resume = append(resume, f.Partition)
		}
	}
	if len(stop) > 0 {
		l.cl.PauseFetchPartitions(map[string][]int32{l.cfg.Topic: stop})
		l.ready.Store(false)
	}
	if len(resume) > 0 {
		l.cl.ResumeFetchPartitions(map[string][]int32{l.cfg.Topic: resume})
	}
	l.faults.Report()
}
