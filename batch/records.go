package batch

import (
	"cmp"
	"math"
	"slices"
	"strings"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/schemas"
)

// newRecords holds the records an incremental run folds, compactly: 40
// bytes a record plus its event id's bytes, the session, user and item ids
// interned, instead of a model.Event (96 bytes, its event id a string of its
// own) in a slice per session. At 10M events a run's 1M new records are
// held beside the whole restored state; this halves them.
type newRecords struct {
	sessions []string // by session index
	sessIdx  map[string]uint32
	strs     []string // user and item ids
	strIdx   map[string]uint32
	eventIDs []byte // every record's event id, back to back
	recs     []newRec
	// bySession, after group, holds each session's records, ordered by
	// (partition, offset), at recs[bySession[i]:bySession[i+1]].
	bySession []int
}

type newRec struct {
	offset, time    int64
	idOff           uint32 // event id at eventIDs[idOff : idOff+idLen]
	session         uint32
	user, item      uint32
	partition       int32
	idLen           uint16
	kind            schemas.Kind
	eventIDOverflow bool // the event id is strs[idOff] instead
}

func newNewRecords() *newRecords {
	return &newRecords{sessIdx: make(map[string]uint32), strIdx: make(map[string]uint32)}
}

func (nr *newRecords) str(s string) uint32 {
	if i, ok := nr.strIdx[s]; ok {
		return i
	}
	c := strings.Clone(s)
	i := uint32(len(nr.strs))
	nr.strIdx[c] = i
	nr.strs = append(nr.strs, c)
	return i
}

// has reports whether session has new records.
func (nr *newRecords) has(session string) bool {
	_, ok := nr.sessIdx[session]
	return ok
}

// add keeps e (its strings may be reused after the call).
func (nr *newRecords) add(e *model.Event) {
	si, ok := nr.sessIdx[e.SessionID]
	if !ok {
		c := strings.Clone(e.SessionID)
		si = uint32(len(nr.sessions))
		nr.sessIdx[c] = si
		nr.sessions = append(nr.sessions, c)
	}
	r := newRec{offset: e.Offset, time: e.Time, idOff: uint32(len(nr.eventIDs)), session: si,
		user: nr.str(e.UserID), item: nr.str(e.ItemID), partition: e.Partition, kind: e.Kind}
	if len(e.EventID) > math.MaxUint16 || len(nr.eventIDs)+len(e.EventID) > math.MaxUint32 {
		// Not expected (event ids are short, a run's new records far
		// fewer than 4 GiB of them); kept exact anyway.
		r.eventIDOverflow, r.idOff = true, nr.str(e.EventID)
	} else {
		r.idLen = uint16(len(e.EventID))
		nr.eventIDs = append(nr.eventIDs, e.EventID...)
	}
	nr.recs = append(nr.recs, r)
}

// group orders the records by session (a counting sort), each session's by
// (partition, offset).
func (nr *newRecords) group() {
	n := len(nr.sessions)
	off := make([]int, n+1)
	for _, r := range nr.recs {
		off[r.session+1]++
	}
	for i := 1; i <= n; i++ {
		off[i] += off[i-1]
	}
	pos := slices.Clone(off[:n])
	out := make([]newRec, len(nr.recs))
	for _, r := range nr.recs {
		out[pos[r.session]] = r
		pos[r.session]++
	}
	nr.recs = out
	for s := range n {
		slices.SortFunc(out[off[s]:off[s+1]], func(a, b newRec) int {
			if c := cmp.Compare(a.partition, b.partition); c != 0 {
				return c
			}
			return cmp.Compare(a.offset, b.offset)
		})
	}
	nr.bySession = off
}

// event returns r as a model event.
func (nr *newRecords) event(r *newRec) model.Event {
	id := ""
	if r.eventIDOverflow {
		id = nr.strs[r.idOff]
	} else {
		id = string(nr.eventIDs[r.idOff : r.idOff+uint32(r.idLen)])
	}
	return model.Event{EventID: id, SessionID: nr.sessions[r.session], UserID: nr.strs[r.user], ItemID: nr.strs[r.item],
		Kind: r.kind, Time: r.time, Partition: r.partition, Offset: r.offset}
}
