package speed

import "time"

// Lag returns the records of the owned partitions not yet processed (high
// watermark minus position, summed over the partitions of
// lambdarec_speed_lag_records, set by the same sync) and how long records have waited: 0
// when none wait, else the time since the layer last processed a record.
// records is -1 before the first poll.
func (l *Layer) Lag() (records int64, seconds float64) {
	records = l.m.lagNow.Load()
	if records <= 0 {
		return records, 0
	}
	return records, max(0, time.Since(time.Unix(0, l.m.progressAt.Load())).Seconds())
}

// LastProcessed returns when the layer last processed records (to within a
// poll), zero before the first.
func (l *Layer) LastProcessed() time.Time {
	if ns := l.m.recordAt.Load(); ns != 0 {
		return time.Unix(0, ns).UTC()
	}
	return time.Time{}
}

// LastShed returns the sessions the layer evicted (live) or dropped
// (retained) for its bounds so far, SessionsShed, and when that count last
// grew (to within a poll; zero before the first).
func (l *Layer) LastShed() (n uint64, at time.Time) {
	n = l.m.shed.Load()
	if ns := l.m.shedAt.Load(); ns != 0 {
		at = time.Unix(0, ns).UTC()
	}
	return n, at
}
