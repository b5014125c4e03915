package model

import (
	"encoding/binary"
	"slices"
	"unsafe"

	"github.com/lambdarec/lambdarec/schemas"
)

// Outcome says what Session.Add did with an event.
type Outcome uint8

// The outcomes of Session.Add. Only Accepted events contribute to the model.
const (
	Accepted  Outcome = iota // first occurrence, within the cap: it counts
	Duplicate                // its event id was already accepted in this session
	Capped                   // the session already holds Params.MaxSessionEvents events
	Stale                    // not after the session's last record (a replay): ignored
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case Accepted:
		return "accepted"
	case Duplicate:
		return "duplicate"
	case Capped:
		return "capped"
	case Stale:
		return "stale"
	}
	return "outcome(" + itoa(int64(o)) + ")"
}

// ignoredRec is a record of the session that did not count (Duplicate or
// Capped), kept so the stats of the records past a boundary can be rebuilt.
type ignoredRec struct {
	partition int32
	outcome   Outcome
	offset    int64
}

// sessionEvent is an accepted event of a session. It holds no pointer: its
// item and user locate their ids in the session's strs, so the garbage
// collector never scans a session's events (the speed layer holds the
// events of every live session; with the ids as strings in each event,
// they were the largest pointer-holding part of its heap).
type sessionEvent struct {
	hash      uint64
	time      int64
	offset    int64
	partition int32
	iid       uint32 // item's id in ids (see Session.ids)
	item      uint32 // the item id's place in Session.strs (Session.str)
	user      uint32 // the user id's place in Session.strs
	kind      schemas.Kind
}

// firstEvents is the room for events a session makes at its first: a
// session of up to four events costs one allocation for them, at 144 bytes
// more than appending one by one for a session of one event, 96 for two
// and none from three on.
const firstEvents = 4

// Session is what the model knows of one session: its accepted events in
// offset order (at most Params.MaxSessionEvents). It is the speed layer's
// per-session state and the unit of the pair ownership rule.
//
// Its fields that hold pointers come first, those that hold none after
// them: the garbage collector scans an object only up to its last pointer,
// and the speed layer holds one Session per session (in place, first of
// its own pointer fields; TestSessionPointersFirst keeps the order).
type Session struct {
	id string
	// events are its accepted events, room for four made at the first
	// (appending from one event on cost an allocation at 1, 2, 3, 5 and 9
	// events; now at 1, 5 and 9).
	events  []sessionEvent
	ignored []ignoredRec
	// strs are the distinct item and user ids its events name, in the
	// order they were first seen (sessionEvent.item, .user, userAt), their
	// bytes end to end in one pointer-free array, each followed by its
	// length (strIndex): the collector marks the array and scans none of
	// it, where a []string of them was an object of pointers to scan (and
	// four more inline in Session). A string str returns points into the
	// array, which is only ever appended to (a grown copy leaves the old
	// one as it was), so it stays valid for as long as it is held.
	strs []byte

	// No pointer from here on.

	// ids is the serial (dict.serialNo) of the dictionary the events' iid
	// refer to (0: not valid); the id in dictionary uids of the user at
	// place uidOf-1 of strs is cached likewise (uidOf 0: none). Serials,
	// not pointers: nothing here for the collector to scan.
	ids  uint32
	uids uint32

	// userAt is the place in strs of the user of its latest accepted
	// event (valid once an event was accepted; User).
	userAt uint32
	uidOf  uint32
	uid    uint32
	// idGen is the IDEmitter.Gen the events' iid refer to (0: none; see
	// AddID). iid holds ids of ids or of idGen's dictionary, never both.
	idGen uint64
	// last record position seen (accepted or not), to ignore replays.
	lastOffset int64
	lastPart   int32
	seen       bool
	// disordered is set once an event was added out of (time, partition,
	// offset) order (see ordered).
	disordered bool
}

// NewSession returns an empty session.
func NewSession(id string) *Session { return &Session{id: id} }

// Init makes s an empty session of id, for a Session held in place (in a
// larger struct): what NewSession returns. s must not be copied after.
func (s *Session) Init(id string) { *s = Session{id: id} }

// ID returns the session id.
func (s *Session) ID() string { return s.id }

// User returns the user of the session's latest accepted event.
func (s *Session) User() string {
	if len(s.events) == 0 {
		return ""
	}
	return s.str(s.userAt)
}

// Len returns the number of accepted events.
func (s *Session) Len() int { return len(s.events) }

// Last returns the partition and offset of the latest record added (ok false
// when none was).
func (s *Session) Last() (partition int32, offset int64, ok bool) {
	return s.lastPart, s.lastOffset, s.seen
}

// Add adds e, which must come after every event already added in (partition,
// offset) order — a record at or before the last one is Stale and ignored, so
// replays are harmless. When e is Accepted, emit (if not nil) receives every
// pair contribution e owns: (e.ItemID, earlier item, weight) for each earlier
// accepted event with a different item within Params.Window of e.Time and a
// non-zero pair weight. Popularity and user contributions are the caller's:
// Model.Apply does all of it.
func (s *Session) Add(p *Params, e Event, emit func(a, b string, w int64)) Outcome {
	return s.add(p, e, nil, emit, nil)
}

// IDEmitter is what AddID needs of a caller that names items by ids of a
// dictionary of its own.
type IDEmitter struct {
	// Gen names the dictionary: non-zero, and a new value whenever ID's
	// ids are no longer those of before (a new dictionary).
	Gen uint64
	// ID returns an item's id in the dictionary, interning it when new.
	ID func(item string) uint32
	// Emit receives a pair contribution, as Add's emit, by the items' ids.
	Emit func(a, b uint32, w int64)
}

// noID marks an event's iid that is not (yet) an id of idGen's
// dictionary (AddID).
const noID = ^uint32(0)

// AddID is Add for a caller that names items by ids: x.Emit receives each
// pair contribution Add's emit would, in the same order, with the items'
// ids instead of their strings. The session keeps each event's item id, so
// an earlier item's id is not looked up again for every pair it makes;
// x.ID is called for e's item once when e is Accepted, and for an earlier
// item only when it first makes a pair after the dictionary changed (x.Gen),
// in the order Add's emit would first name them.
func (s *Session) AddID(p *Params, e Event, x *IDEmitter) Outcome {
	return s.add(p, e, nil, nil, x)
}

func (s *Session) add(p *Params, e Event, m *Model, emit func(a, b string, w int64), x *IDEmitter) Outcome {
	if s.seen && !before(s.lastPart, s.lastOffset, e.Partition, e.Offset) {
		return Stale
	}
	s.seen, s.lastPart, s.lastOffset = true, e.Partition, e.Offset
	h := EventIDHash(e.EventID)
	for i := range s.events {
		if s.events[i].hash == h {
			s.ignored = append(s.ignored, ignoredRec{partition: e.Partition, outcome: Duplicate, offset: e.Offset})
			return Duplicate
		}
	}
	if len(s.events) >= p.MaxSessionEvents {
		s.ignored = append(s.ignored, ignoredRec{partition: e.Partition, outcome: Capped, offset: e.Offset})
		return Capped
	}
	we := p.Weight(e.Kind)
	item := s.strIndex(e.ItemID)
	var eid uint32
	switch {
	case m != nil:
		eid = s.internItems(m.items, e.ItemID)
	case x != nil:
		s.ids = 0
		s.emitGen(x.Gen)
		eid = x.ID(e.ItemID)
	default:
		s.ids, s.idGen = 0, 0 // the cached ids no longer cover every event
	}
	if we != 0 && (m != nil || emit != nil || x != nil) {
		win := p.windowMicros()
		for i := range s.events {
			o := &s.events[i]
			if o.item == item || !within(o.time, e.Time, win) {
				continue
			}
			w := p.pairWeight(we, p.Weight(o.kind))
			if w == 0 {
				continue
			}
			switch {
			case m != nil:
				m.covisit.addID(eid, o.iid, w)
			case x != nil:
				if o.iid == noID {
					o.iid = x.ID(s.str(o.item))
				}
				x.Emit(eid, o.iid, w)
			default:
				emit(e.ItemID, s.str(o.item), w)
			}
		}
	}
	if n := len(s.events); n > 0 {
		if l := &s.events[n-1]; l.time > e.Time || l.time == e.Time && !before(l.partition, l.offset, e.Partition, e.Offset) {
			s.disordered = true
		}
	}
	if len(s.events) == 0 || e.UserID != s.str(s.userAt) {
		s.userAt = s.strIndex(e.UserID)
	}
	if s.events == nil {
		s.events = make([]sessionEvent, 0, firstEvents)
	}
	s.events = append(s.events, sessionEvent{hash: h, item: item, iid: eid, user: s.userAt, kind: e.Kind, time: e.Time, partition: e.Partition, offset: e.Offset})
	return Accepted
}

// A string in Session.strs is its bytes followed by its length: one byte
// when below longStr, else its four bytes (little endian) and a longStr
// byte. Its place is the index of its last byte, so the strings are walked
// from the newest back.
const (
	longStr       = 0xFF
	firstStrBytes = 48 // strs' first allocation: a user and three or four items of the generator's lengths
)

// strAt returns the bytes' start and end of the string whose last byte is
// strs[at].
func (s *Session) strAt(at uint32) (start, end uint32) {
	end = at
	n := uint32(s.strs[at])
	if n == longStr {
		end = at - 4
		n = binary.LittleEndian.Uint32(s.strs[end:at])
	}
	return end - n, end
}

// str returns the string at place at of strs (strIndex).
func (s *Session) str(at uint32) string {
	start, end := s.strAt(at)
	b := s.strs[start:end]
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// strIndex returns v's place in s.strs, adding it when new. The newest
// strings are looked at first: a session's next event mostly names an item
// or user it named lately.
func (s *Session) strIndex(v string) uint32 {
	for at := len(s.strs) - 1; at >= 0; {
		start, end := s.strAt(uint32(at))
		if string(s.strs[start:end]) == v {
			return uint32(at)
		}
		at = int(start) - 1
	}
	if s.strs == nil {
		s.strs = make([]byte, 0, max(firstStrBytes, len(v)+1))
	}
	s.strs = append(s.strs, v...)
	if n := len(v); n < longStr {
		s.strs = append(s.strs, byte(n))
	} else {
		s.strs = binary.LittleEndian.AppendUint32(s.strs, uint32(n))
		s.strs = append(s.strs, longStr)
	}
	return uint32(len(s.strs) - 1)
}

// internItems makes the cached item ids of s's events refer to d (interning
// them again when d is a different model's dictionary) and returns item's id.
func (s *Session) internItems(d *dict, item string) uint32 {
	if s.ids != d.serialNo() {
		for i := range s.events {
			s.events[i].iid = d.intern(s.str(s.events[i].item))
		}
		s.ids, s.idGen = d.serialNo(), 0 // iid holds d's ids, no longer AddID's
	}
	return d.intern(item)
}

// internUser returns the id in d of the user strs[at], cached per session.
func (s *Session) internUser(d *dict, at uint32) uint32 {
	if s.uids != d.serialNo() || s.uidOf != at+1 {
		s.uids, s.uidOf, s.uid = d.serialNo(), at+1, d.intern(s.str(at))
	}
	return s.uid
}

// AppendRecent appends the session's n most recent distinct items to dst, most
// recent first: items ordered by their latest event (time, then record
// position), newest first.
func (s *Session) AppendRecent(dst []string, n int) []string {
	start := len(dst)
	if s.ordered() {
		// The usual case, events added in that order: walk them backwards,
		// without sorting.
		for i := len(s.events) - 1; i >= 0 && len(dst)-start < n; i-- {
			if item := s.str(s.events[i].item); !slices.Contains(dst[start:], item) {
				dst = append(dst, item)
			}
		}
		return dst
	}
	// Walk events newest first by (time, partition, offset).
	idx := make([]int, len(s.events))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int {
		ea, eb := &s.events[a], &s.events[b]
		switch {
		case ea.time != eb.time:
			if ea.time > eb.time {
				return -1
			}
			return 1
		case before(eb.partition, eb.offset, ea.partition, ea.offset):
			return -1
		case before(ea.partition, ea.offset, eb.partition, eb.offset):
			return 1
		}
		return 0
	})
	for _, i := range idx {
		if len(dst)-start >= n {
			break
		}
		item := s.str(s.events[i].item)
		if !slices.Contains(dst[start:], item) {
			dst = append(dst, item)
		}
	}
	return dst
}

// ordered reports whether s's events are in ascending (time, partition,
// offset) order, the reverse of AppendRecent's: whether each was added after
// the one before in that order (events are only ever appended).
func (s *Session) ordered() bool { return !s.disordered }

// AppendRecentIDs is AppendRecent for a caller that names items by ids: id
// returns an item's id (distinct items have distinct ids), and the ids of
// the session's n most recent distinct items are appended to dst, most
// recent first. Distinct items are told apart by their ids, so no item
// string is compared.
func (s *Session) AppendRecentIDs(dst []uint32, n int, id func(item string) uint32) []uint32 {
	start := len(dst)
	if !s.ordered() {
		for _, item := range s.AppendRecent(nil, n) {
			dst = append(dst, id(item))
		}
		return dst
	}
	for i := len(s.events) - 1; i >= 0 && len(dst)-start < n; i-- {
		if d := id(s.str(s.events[i].item)); !slices.Contains(dst[start:], d) {
			dst = append(dst, d)
		}
	}
	return dst
}

// emitGen makes the events' iid ids of the IDEmitter generation gen: when
// they hold another dictionary's (an earlier Gen, or a Model's), every one is
// cleared to noID, to be looked up again, and the Model's cached ids go.
func (s *Session) emitGen(gen uint64) {
	if s.idGen != gen {
		for i := range s.events {
			s.events[i].iid = noID
		}
		s.ids, s.idGen = 0, gen
	}
}

// AppendRecentIDsOf is AppendRecentIDs(dst, n, x.ID) for a caller whose
// ids are those AddID keeps (x's dictionary, Gen non-zero): the events'
// ids are read as they are, and x.ID is called only for an event whose
// item was not looked up since the dictionary changed (its id is then
// kept, as AddID keeps it). When the events hold ids of another
// dictionary (an earlier Gen, or Model's), they are made x's first, as
// AddID does. No item string is looked up or compared for an item already
// looked up: the speed layer scores a view after every few events of a
// session, and looking its recent items up by string was a fifth of the
// view's cost. Events out of order take AppendRecentIDs's path.
func (s *Session) AppendRecentIDsOf(dst []uint32, n int, x *IDEmitter) []uint32 {
	if x.Gen == 0 || !s.ordered() {
		return s.AppendRecentIDs(dst, n, x.ID)
	}
	s.emitGen(x.Gen)
	start := len(dst)
	for i := len(s.events) - 1; i >= 0 && len(dst)-start < n; i-- {
		o := &s.events[i]
		if o.iid == noID {
			o.iid = x.ID(s.str(o.item))
		}
		if !slices.Contains(dst[start:], o.iid) {
			dst = append(dst, o.iid)
		}
	}
	return dst
}

// Recent returns the session's n most recent distinct items, most recent first.
func (s *Session) Recent(n int) []string { return s.AppendRecent(nil, n) }

// Bought reports whether the session purchased item.
func (s *Session) Bought(item string) bool {
	for i := range s.events {
		if s.events[i].kind == schemas.KindPurchase && s.str(s.events[i].item) == item {
			return true
		}
	}
	return false
}

// Sizeof estimates the session's memory in bytes, for state accounting.
func (s *Session) Sizeof() int {
	return int(unsafe.Sizeof(*s)) + len(s.id) + cap(s.events)*int(unsafe.Sizeof(sessionEvent{})) + cap(s.ignored)*16 + cap(s.strs)
}

// Covered reports whether every record of the session is at or below b, so
// none of its contributions belongs to the speed layer's deltas.
func (s *Session) Covered(b Boundary) bool {
	return !s.seen || b.Covers(s.lastPart, s.lastOffset)
}

// Boundary maps each Kafka partition to the highest offset a batch covers
// (store.BatchMeta.Boundary). A partition that is absent is not covered at all.
type Boundary map[int32]int64

// Covers reports whether the record at (partition, offset) is in the batch.
func (b Boundary) Covers(partition int32, offset int64) bool {
	hi, ok := b[partition]
	return ok && offset <= hi
}
