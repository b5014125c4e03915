package model

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/lambdarec/lambdarec/schemas"
)

// Spill routes the events of a full recompute to session-hash shards kept in
// local files, so that the source is read once however many parts the
// recompute needs: each shard is then read back and built in turn (Build)
// with only its own events in memory. The model equals one Builder over
// every event (TestSpillEqualsBuild).
//
// Every id is interned as events arrive, so a spilled event is a fixed
// record of spillRecord bytes with no string: item and user ids go into the
// accumulator's dictionaries (every part shares them anyway), and each
// session gets a number in its shard, in the order of its first event, which
// is the Builder's own numbering of the shard's sessions (their ids are kept
// once, in memory: the run writes every session's span in the end anyway).
// Records are gathered in blocks per shard and written by a goroutine of
// their own, beside the scan that adds them.
type Spill struct {
	a     *Accumulator
	files []*os.File
	n     []int      // records spilled to each shard
	names [][]string // each shard's session ids, by number
	// While events are added: the block being filled for each shard, each
	// session (by index in loc), the previous event's session and item.
	blocks            [][]byte
	sess              map[string]uint32
	loc               []sessionLoc
	last              string
	lastSess          uint32
	lastItem          uint32
	started           bool
	nItems, nUsers    uint32 // the dictionaries' sizes once every event is added
	out               chan spillBlock
	free              chan []byte
	done              chan struct{} // closed when the writer has returned
	werr              error         // the writer's first error, read after done
	finished, stopped bool
}

// sessionLoc is where a session's events go (shard, and the session's number
// in it) and the user of its latest event (an interning shortcut).
type sessionLoc struct {
	shard, num, user uint32
}

// spillBlock is a block of records for the writer.
type spillBlock struct {
	shard int
	b     []byte
}

// spillRecord is a spilled event: hash, time, offset (8 bytes each),
// partition, item, user, session number (4 each), kind (1).
const spillRecord = 8 + 8 + 8 + 4 + 4 + 4 + 4 + 1

// spillBlockRecords is the records of a block, written (and read back) at
// once: ~160 KiB.
const spillBlockRecords = 4096

// Spill returns a Spill of shards shards, in files created in dir (the
// system's temporary directory when empty). Close removes them.
func (a *Accumulator) Spill(dir string, shards int) (*Spill, error) {
	if shards < 1 || shards > 1<<16 {
		return nil, fmt.Errorf("model: spill into %d shards", shards)
	}
	s := &Spill{a: a, sess: make(map[string]uint32), n: make([]int, shards), names: make([][]string, shards),
		blocks: make([][]byte, shards), out: make(chan spillBlock, 4), free: make(chan []byte, 8), done: make(chan struct{})}
	for range shards {
		f, err := os.CreateTemp(dir, "lambdarec-batch-shard-*")
		if err != nil {
			s.stopped = true // no writer yet
			close(s.done)
			return nil, errors.Join(fmt.Errorf("create spill file: %w", err), s.Close())
		}
		s.files = append(s.files, f)
	}
	go s.write()
	return s, nil
}

// write writes the blocks to their shards' files until out is closed; the
// first error sticks (werr) and the remaining blocks are dropped.
func (s *Spill) write() {
	defer close(s.done)
	for blk := range s.out {
		if s.werr == nil {
			if _, err := s.files[blk.shard].Write(blk.b); err != nil {
				s.werr = fmt.Errorf("spill events: %w", err)
			}
		}
		select {
		case s.free <- blk.b[:0]:
		default:
		}
	}
}

// Add spills e to the shard of its session. A write error sticks: Build
// returns it.
func (s *Spill) Add(e Event) {
	if s.finished {
		return
	}
	m := s.a.m
	sid := s.lastSess
	if !s.started || e.SessionID != s.last {
		id, ok := s.sess[e.SessionID]
		if !ok {
			c := strings.Clone(e.SessionID)
			id = uint32(len(s.loc))
			s.sess[c] = id
			shard := EventIDHash(c) % uint64(len(s.files))
			s.loc = append(s.loc, sessionLoc{shard: uint32(shard), num: uint32(len(s.names[shard])), user: m.users.users.intern(e.UserID)})
			s.names[shard] = append(s.names[shard], c)
		}
		sid, s.lastSess = id, id
		l := s.loc[id]
		s.last = s.names[l.shard][l.num]
	}
	if !s.started || m.items.str(s.lastItem) != e.ItemID {
		s.lastItem = m.items.intern(e.ItemID)
	}
	s.started = true
	l := &s.loc[sid]
	if m.users.users.str(l.user) != e.UserID {
		l.user = m.users.users.intern(e.UserID)
	}
	blk := s.blocks[l.shard]
	if blk == nil {
		select {
		case blk = <-s.free:
		default:
			blk = make([]byte, 0, spillRecord*spillBlockRecords)
		}
	}
	n := len(blk)
	blk = blk[:n+spillRecord]
	r := blk[n : n+spillRecord]
	binary.LittleEndian.PutUint64(r[0:], EventIDHash(e.EventID))
	binary.LittleEndian.PutUint64(r[8:], uint64(e.Time))
	binary.LittleEndian.PutUint64(r[16:], uint64(e.Offset))
	binary.LittleEndian.PutUint32(r[24:], uint32(e.Partition))
	binary.LittleEndian.PutUint32(r[28:], s.lastItem)
	binary.LittleEndian.PutUint32(r[32:], l.user)
	binary.LittleEndian.PutUint32(r[36:], l.num)
	r[40] = byte(e.Kind)
	s.n[l.shard]++
	if len(blk) == cap(blk) {
		s.out <- spillBlock{int(l.shard), blk}
		blk = nil
	}
	s.blocks[l.shard] = blk
}

// finish writes the blocks left, waits for the writer and drops what only
// adding needs; it returns the writer's error.
func (s *Spill) finish() error {
	if !s.finished {
		s.finished = true
		for i, b := range s.blocks {
			if len(b) > 0 {
				s.out <- spillBlock{i, b}
			}
		}
		s.stop()
		s.nItems, s.nUsers = uint32(s.a.m.items.len()), uint32(s.a.m.users.users.len())
		s.blocks, s.sess, s.loc, s.last = nil, nil, nil, ""
	}
	return s.werr
}

// stop ends the writer and waits for it.
func (s *Spill) stop() {
	if !s.stopped {
		s.stopped = true
		close(s.out)
	}
	<-s.done
}

// Build reads each shard back into a Builder of its sessions, calls each
// with it (before Build: SessionSpans), then adds it to the accumulator.
// The shards are read by a goroutine of their own, one shard ahead of the
// build: the next shard is decoded while the current one is built and
// merged, so at most two shards' events are in memory at once. The Spill
// must not be used afterwards but still be closed.
func (s *Spill) Build(each func(b *Builder)) error {
	if err := s.finish(); err != nil {
		return err
	}
	type part struct {
		b   *Builder
		err error
	}
	parts := make(chan part)
	stop := make(chan struct{})
	done := make(chan struct{})
	// The event buffer of a part built is reused by the part after next
	// (two parts are in memory at once): no new 48 bytes an event, zeroed,
	// for every part.
	recycle := make(chan []bevent, 1)
	go func() {
		defer close(done)
		defer close(parts)
		for i := range s.files {
			var evs []bevent
			select {
			case evs = <-recycle:
			default:
			}
			b, err := s.readShard(i, evs)
			select {
			case parts <- part{b, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	// On an early return the reader is stopped and waited for: it must not
	// touch the files while Close removes them.
	defer func() {
		close(stop)
		<-done
	}()
	for p := range parts {
		if p.err != nil {
			return p.err
		}
		if each != nil {
			each(p.b)
		}
		evs := p.b.evs
		s.a.Add(p.b)
		select {
		case recycle <- evs[:0]:
		default:
		}
	}
	return nil
}

// readShard reads shard i back into a Builder of its sessions and removes
// its file; evs, when large enough, is the Builder's event buffer. It
// touches only the new Builder, the shard's file and session ids: the item
// and user ids in the records are interned already.
func (s *Spill) readShard(i int, evs []bevent) (*Builder, error) {
	f := s.files[i]
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read spilled events: %w", err)
	}
	b := s.a.Builder()
	// The shard's sessions are numbered as the Builder numbers them: in
	// the order of their first records. Its dictionary is only read (the
	// spans' session ids).
	names := s.names[i]
	s.names[i] = nil
	b.sessions = &dict{strs: names}
	if cap(evs) >= s.n[i] {
		b.evs = evs[:0]
	} else {
		// With room for a slightly larger part to reuse it.
		b.evs = make([]bevent, 0, s.n[i]+s.n[i]/32)
	}
	buf := make([]byte, spillRecord*spillBlockRecords)
	for left := s.n[i]; left > 0; {
		k := min(left, spillBlockRecords)
		left -= k
		if _, err := io.ReadFull(f, buf[:k*spillRecord]); err != nil {
			return nil, fmt.Errorf("read spilled events of %s: %w", f.Name(), err)
		}
		for r := buf[:k*spillRecord]; len(r) >= spillRecord; r = r[spillRecord:] {
			e := bevent{
				hash:      binary.LittleEndian.Uint64(r[0:]),
				time:      int64(binary.LittleEndian.Uint64(r[8:])),
				offset:    int64(binary.LittleEndian.Uint64(r[16:])),
				partition: int32(binary.LittleEndian.Uint32(r[24:])),
				item:      binary.LittleEndian.Uint32(r[28:]),
				user:      binary.LittleEndian.Uint32(r[32:]),
				next:      -1,
				kind:      schemas.Kind(r[40]),
			}
			sess := binary.LittleEndian.Uint32(r[36:])
			if int(sess) > len(b.head) || int(sess) >= len(names) || e.item >= s.nItems || e.user >= s.nUsers {
				return nil, fmt.Errorf("read spilled events of %s: a record is out of range (session %d of %d, item %d of %d, user %d of %d)",
					f.Name(), sess, len(names), e.item, s.nItems, e.user, s.nUsers)
			}
			b.push(sess, e)
		}
	}
	if len(b.head) != len(names) {
		return nil, fmt.Errorf("read spilled events of %s: %d of %d sessions", f.Name(), len(b.head), len(names))
	}
	// The shard is in memory: its file is not needed any more.
	if err := s.closeFile(i); err != nil {
		return nil, err
	}
	return b, nil
}

func (s *Spill) closeFile(i int) error {
	f := s.files[i]
	if f == nil {
		return nil
	}
	s.files[i] = nil
	return errors.Join(f.Close(), os.Remove(f.Name()))
}

// Close removes the spill files that remain.
func (s *Spill) Close() error {
	s.stop()
	var errs []error
	for i := range s.files {
		if err := s.closeFile(i); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
