package speed

import (
	"strconv"
	"strings"
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
	pos, err := strconv.ParseInt(s, 10, 64)
	if err != nil || pos < 0 {
		return -1
	}
	return pos
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
		p.markDirty(s)
	}
}
