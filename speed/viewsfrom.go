package speed

import (
	"strconv"
	"strings"
	"time"
)

// A replay from the committed horizon re-applies records whose views the
// previous owner already wrote. For the sessions it holds at the commit
// point those views come out the same, but not for a session the previous
// owner forgot before the commit (it expired while the batch covered it)
// whose first records precede the horizon: the replay rebuilds it from its
// later records only, and its views — newer versions, (offset, scored at) —
// would replace the right ones. So each commit also records, in the offset
// commit's metadata, the position up to which the member wrote the views of
// the partition (viewsMeta); a member replaying the partition writes no view
// before that position, then scores every live session of the partition
// once, from the state that equals the previous owner's there.

// viewsMetaPrefix starts the offset commit metadata of a speed member: the
// partition's position up to which views were written follows it.
const viewsMetaPrefix = "lambdarec-speed views-written="

// viewsMeta is the offset commit metadata saying the views of the records
// before pos were written.
func viewsMeta(pos int64) string { return viewsMetaPrefix + strconv.FormatInt(pos, 10) }

// parseViewsMeta returns the position of viewsMeta's metadata, -1 for any
// other metadata (a commit by an older version, or by another tool).
func parseViewsMeta(meta string) int64 {
	s, ok := strings.CutPrefix(meta, viewsMetaPrefix)
	if !ok {
		return -1
	}
	s, _, _ = strings.Cut(s, shedMetaPrefix)
	pos, err := strconv.ParseInt(s, 10, 64)
	if err != nil || pos < 0 {
		return -1
	}
	return pos
}

// A member whose bounds bite (max_sessions, max_state_bytes,
// max_retained_events) says so in the same metadata, after the views'
// position, for shedStampFor after it last shed a session: the sessions
// shed so far and when (shedMeta). Processes that see the group's commits
// but not the member — serve's /v1/status — read it with ShedFromCommit. A
// member of a version before this stamp reads such metadata as unknown (no
// views position: its replay of that partition writes views at once).

// shedMetaPrefix separates the shed stamp from the views' position.
const shedMetaPrefix = " shed="

// shedStampFor is how long after the last session shed commits carry the
// stamp.
const shedStampFor = time.Minute

// shedMeta is the stamp of n sessions shed so far, the last at at.
func shedMeta(n uint64, at time.Time) string {
	return shedMetaPrefix + strconv.FormatUint(n, 10) + "@" + strconv.FormatInt(at.UnixMilli(), 10)
}

// shedStamp is the stamp the layer's commits carry at now: shedMeta if it
// shed a session within shedStampFor, else "".
func (l *Layer) shedStamp(now time.Time) string {
	n, at := l.LastShed()
	if at.IsZero() || now.Sub(at) >= shedStampFor {
		return ""
	}
	return shedMeta(n, at)
}

// ShedFromCommit returns the shed stamp of a speed member's offset commit
// metadata: the sessions the member had shed for its bounds and when it last
// shed one (to the millisecond); ok is false for metadata without a stamp.
func ShedFromCommit(meta string) (n uint64, at time.Time, ok bool) {
	_, stamp, found := strings.Cut(meta, shedMetaPrefix)
	if !found || !strings.HasPrefix(meta, viewsMetaPrefix) {
		return 0, time.Time{}, false
	}
	ns, ms, found := strings.Cut(stamp, "@")
	if !found {
		return 0, time.Time{}, false
	}
	n, err := strconv.ParseUint(ns, 10, 64)
	if err != nil {
		return 0, time.Time{}, false
	}
	msec, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || msec <= 0 {
		return 0, time.Time{}, false
	}
	return n, time.UnixMilli(msec).UTC(), true
}

// muted reports whether the partition is replaying records whose views its
// previous owner wrote: no view of its sessions is written meanwhile.
func (ps *partition) muted() bool { return ps.viewsFrom > ps.next }

// viewsWritten returns the position up to which the views of the
// partition's records are written once the pending ones are (what a commit
// records): its position, or, while muted, where the previous owner's views
// end.
func (ps *partition) viewsWritten() int64 { return max(ps.next, ps.viewsFrom) }

// muteUntil makes the replay of partition id write no view before pos (the
// position its previous owner wrote views up to): at pos every live
// session of the partition is scored once.
func (p *processor) muteUntil(id int32, pos int64) {
	if ps := p.parts[id]; ps != nil {
		ps.viewsFrom = pos
	}
}

// unmute is called when the replay of ps reaches viewsFrom: the state of its
// sessions is the previous owner's there, and each live one is scored
// again (their stored views may predate changes of their rows).
func (p *processor) unmute(ps *partition) {
	ps.viewsFrom = -1
	for s := ps.live.head; s != nil; s = s.next {
		p.markDirty(s, markUnmute)
	}
}
