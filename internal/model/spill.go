package model

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/lambdarec/lambdarec/schemas"
)

// Spill routes the events of a full recompute to session-hash shards kept in
// local files, so that the source is read once however many parts the
// recompute needs: each shard is then read back and built in turn (Build)
// with only its own events in memory. Item and user ids are interned into
// the accumulator's dictionaries as events arrive (they are shared by every
// part anyway); a spilled event is a fixed record of spillRecord bytes plus
// its session id, whose interning is left to the read of its shard (one
// part's sessions at a time: a dictionary of every session while the
// snapshot is scanned cost twice as much, in cache misses) — or, for an
// event whose session an earlier row of its chunk had (AddChunkRow), a
// reference to that row's record instead of the id. Records are
// gathered in blocks per shard and written by a goroutine of their own,
// beside the scan that adds them. The model equals one Builder over every
// event (TestSpillEqualsBuild).
type Spill struct {
	a     *Accumulator
	files []*os.File
	n     []int // records spilled to each shard
	// While events are added: the block being filled for each shard, the
	// item and user ids of the event added last.
	blocks             [][]byte
	lastItem, lastUser uint32
	// AddChunkRow's rows of the current chunk: the index of their record
	// in its shard.
	rowRec []int
	// The item and user ids are looked up here before the dictionaries'
	// maps (the maps cost twice as much per event); released by finish.
	itemIndex, userIndex *stringIndex
	nItems, nUsers       uint32 // the dictionaries' sizes once every event is added
	out                  chan spillBlock
	free                 chan []byte
	done                 chan struct{} // closed when the writer has returned
	werr                 error         // the writer's first error, read after done
	finished, stopped    bool
	// sessions is the sessions of the shard read last (by the reader), to
	// size the next one's dictionary: the shards are alike.
	sessions int
	index    *sessionIndex // numbers the sessions of the shard being read (the reader's)
}

// spillBlock is a block of records for the writer.
type spillBlock struct {
	shard int
	b     []byte
}

// spillRecord is the fixed part of a spilled event: hash, time, offset (8
// bytes each), partition, item, user (4 each), kind (1); then a uvarint v:
// when even, the session id's length is v>>1 and its bytes follow; when
// odd, the session is that of the record v>>1 records before this one in
// the same shard (AddChunkRow).
const spillRecord = 8 + 8 + 8 + 4 + 4 + 4 + 1

// spillBlockSize is the size of the blocks written. The writer is woken
// about once per block: at 256 KiB, ~1,700 blocks of a 10M-event scan, each
// wake-up a hand-off on two cores shared with the page readers and the sink
// (see the batch's pageScanAhead).
const spillBlockSize = 1 << 20

// spillReadSize is the size of the buffer a shard is read back with.
const spillReadSize = 256 << 10

// maxSpillSession bounds the session id length a spilled record may carry.
const maxSpillSession = 1 << 20

// Spill returns a Spill of shards shards, in files created in dir (the
// system's temporary directory when empty). Close removes them.
func (a *Accumulator) Spill(dir string, shards int) (*Spill, error) {
	if shards < 1 || shards > 1<<16 {
		return nil, fmt.Errorf("model: spill into %d shards", shards)
	}
	s := &Spill{a: a, n: make([]int, shards), blocks: make([][]byte, shards),
		out: make(chan spillBlock, 4), free: make(chan []byte, 8), done: make(chan struct{}),
		itemIndex: newStringIndex(), userIndex: newStringIndex()}
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
func (s *Spill) Add(e Event) { s.AddHashed(e, EventIDHash(e.EventID), EventIDHash(e.SessionID)) }

// AddHashed is Add of e given the EventIDHash of its event id and of its
// session id (computed by the caller: the batch's page scan hashes on its
// reader goroutines, beside this serial sink).
func (s *Spill) AddHashed(e Event, idHash, sessionHash uint64) {
	if s.finished {
		return
	}
	s.intern(e)
	s.put(int(sessionHash%uint64(len(s.files))), e, idHash, s.lastItem, s.lastUser, 0)
}

// AddChunkRow is AddHashed of e, row row of a chunk (consecutive events
// added by AddChunkRow, numbered from 0, each right after the row before
// it), given sessionRow, the first row of the chunk with e's session id (row
// itself when no earlier row has it; the batch's page scan finds them on
// its reader goroutines, comparing the strings of a chunk that is in their
// cache). A repeated session is spilled as a reference to the record of
// its earlier row (same session, same shard), which the read of the shard
// resolves without hashing, comparing or copying the id: in the generated
// stream about 60% of a 4,096-row chunk's rows repeat a session of the
// chunk.
func (s *Spill) AddChunkRow(e Event, idHash, sessionHash uint64, row, sessionRow int) {
	if s.finished {
		return
	}
	if row >= len(s.rowRec) {
		rows := make([]int, max(row+1, 2*len(s.rowRec), 1024))
		copy(rows, s.rowRec)
		s.rowRec = rows
	}
	shard := int(sessionHash % uint64(len(s.files)))
	rec := s.n[shard]
	s.rowRec[row] = rec
	if sessionRow >= 0 && sessionRow < row {
		s.intern(e)
		s.put(shard, e, idHash, s.lastItem, s.lastUser, rec-s.rowRec[sessionRow])
		return
	}
	s.AddHashed(e, idHash, sessionHash)
}

// intern sets lastItem and lastUser to e's item and user ids. (A check of
// the previous event's ids first would read their strings: as dear as a
// look-up of a short id in its stringIndex, which reads one slot.)
func (s *Spill) intern(e Event) {
	m := s.a.m
	s.lastItem = s.itemIndex.intern(m.items, e.ItemID)
	s.lastUser = s.userIndex.intern(m.users.users, e.UserID)
}

// put appends a record of e (item and user interned) to shard's block;
// back, when positive, is how many records before this one of the shard
// the record of e's session id is, spilled instead of the id (AddChunkRow).
func (s *Spill) put(shard int, e Event, idHash uint64, item, user uint32, back int) {
	blk := s.blocks[shard]
	if blk == nil {
		select {
		case blk = <-s.free:
		default:
			blk = make([]byte, 0, spillBlockSize+256)
		}
	}
	blk = binary.LittleEndian.AppendUint64(blk, idHash)
	blk = binary.LittleEndian.AppendUint64(blk, uint64(e.Time))
	blk = binary.LittleEndian.AppendUint64(blk, uint64(e.Offset))
	blk = binary.LittleEndian.AppendUint32(blk, uint32(e.Partition))
	blk = binary.LittleEndian.AppendUint32(blk, item)
	blk = binary.LittleEndian.AppendUint32(blk, user)
	blk = append(blk, byte(e.Kind))
	if back > 0 {
		blk = binary.AppendUvarint(blk, uint64(back)<<1|1)
	} else {
		blk = binary.AppendUvarint(blk, uint64(len(e.SessionID))<<1)
		blk = append(blk, e.SessionID...)
	}
	s.n[shard]++
	if len(blk) >= spillBlockSize {
		s.out <- spillBlock{shard, blk}
		blk = nil
	}
	s.blocks[shard] = blk
}

// finish writes the blocks left and waits for the writer; it returns the
// writer's error.
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
		s.blocks, s.itemIndex, s.userIndex = nil, nil, nil
		s.rowRec = nil
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
// merged (the first two are decoded at once, before the first build), so
// at most two shards' events are in memory at once. The Spill
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
	// The event buffers of a part built are reused by the part after next
	// (two parts are in memory at once): no new 44 bytes an event, zeroed,
	// for every part.
	type buffers struct {
		evs  []bevent
		sids []uint32
	}
	recycle := make(chan buffers, 1)
	go func() {
		defer close(done)
		defer close(parts)
		// The first two shards are read at once, the second by a goroutine
		// of its own with its own session index: nothing else runs while
		// the first is read (one core idle for a part's read at the build's
		// start), and the second would otherwise be read beside the first
		// part's build. Still at most two parts' events are in memory: the
		// third is read once the first is built.
		var second chan part
		if len(s.files) > 1 {
			second = make(chan part, 1)
			go func() {
				var p part
				p.b, _, p.err = s.readShard(1, nil, nil, newSessionIndex(), 0)
				second <- p
			}()
		}
		send := func(p part) bool {
			select {
			case parts <- p:
				return p.err == nil
			case <-stop:
				return false
			}
		}
		for i := range s.files {
			var p part
			if i == 1 {
				p = <-second
			} else {
				var bufs buffers
				select {
				case bufs = <-recycle:
				default:
				}
				if s.index == nil {
					s.index = newSessionIndex()
				}
				p.b, s.sessions, p.err = s.readShard(i, bufs.evs, bufs.sids, s.index, s.sessions)
			}
			if !send(p) {
				if i == 0 && second != nil {
					<-second // the second reader touches the files too
				}
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
		bufs := buffers{p.b.evs[:0], p.b.sids[:0]}
		s.a.Add(p.b)
		select {
		case recycle <- bufs:
		default:
		}
	}
	return nil
}

// readShard reads shard i back into a Builder of its sessions, numbered
// by ix, and removes its file; it returns the Builder and its number of
// sessions. evs and sids, when large enough, are the Builder's event
// buffers; sessions (the previous shard's: the shards are alike) sizes
// the session lists and index. It touches only the new Builder, ix and the
// shard's file (shards may be read concurrently, each with its own ix): the
// item and user ids in the records are interned already.
func (s *Spill) readShard(i int, evs []bevent, sids []uint32, ix *sessionIndex, sessions int) (*Builder, int, error) {
	f := s.files[i]
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, fmt.Errorf("read spilled events: %w", err)
	}
	b := s.a.Builder()
	// The part's sessions are numbered by ix, not a dictionary map
	// (b.sessions.ids stays nil: the Builder is only built).
	h := sessions + sessions/16
	b.sessions = &dict{strs: make([]string, 0, h)}
	ix.reset(h)
	if h > 0 {
		// Sized as the previous shard's, the session lists and index do not
		// grow while they fill.
		b.size, b.user = make([]int32, 0, h), make([]uint32, 0, h)
	}
	if cap(evs) >= s.n[i] && cap(sids) >= s.n[i] {
		b.evs, b.sids = evs[:0], sids[:0]
	} else {
		// With room for a slightly larger part to reuse them.
		b.evs, b.sids = make([]bevent, 0, s.n[i]+s.n[i]/32), make([]uint32, 0, s.n[i]+s.n[i]/32)
	}
	// The records are parsed where the reader buffers them (Peek), not
	// copied out one by one.
	r := bufio.NewReaderSize(f, spillReadSize)
	var long []byte
	for range s.n[i] {
		h, _ := r.Peek(spillRecord + binary.MaxVarintLen64)
		if len(h) < spillRecord+1 {
			return nil, 0, fmt.Errorf("read spilled events of %s: %w", f.Name(), io.ErrUnexpectedEOF)
		}
		e := bevent{
			hash:      binary.LittleEndian.Uint64(h[0:]),
			time:      int64(binary.LittleEndian.Uint64(h[8:])),
			offset:    int64(binary.LittleEndian.Uint64(h[16:])),
			partition: int32(binary.LittleEndian.Uint32(h[24:])),
			item:      binary.LittleEndian.Uint32(h[28:]),
			user:      binary.LittleEndian.Uint32(h[32:]),
			kind:      schemas.Kind(h[36]),
		}
		v, w := binary.Uvarint(h[spillRecord:])
		if w > 0 && v&1 == 1 && e.item < s.nItems && e.user < s.nUsers {
			// A reference to an earlier record's session: its id in the
			// part is that record's.
			back := v >> 1
			if back == 0 || back > uint64(len(b.sids)) {
				return nil, 0, fmt.Errorf("read spilled events of %s: a record refers to the session %d records back, of %d read",
					f.Name(), back, len(b.sids))
			}
			if _, err := r.Discard(spillRecord + w); err != nil {
				return nil, 0, fmt.Errorf("read spilled events of %s: %w", f.Name(), err)
			}
			b.push(b.sids[len(b.sids)-int(back)], e)
			continue
		}
		n := v >> 1
		if w <= 0 || n > maxSpillSession || e.item >= s.nItems || e.user >= s.nUsers {
			return nil, 0, fmt.Errorf("read spilled events of %s: a record is out of range (session id length %d, item %d of %d, user %d of %d)",
				f.Name(), n, e.item, s.nItems, e.user, s.nUsers)
		}
		if _, err := r.Discard(spillRecord + w); err != nil {
			return nil, 0, fmt.Errorf("read spilled events of %s: %w", f.Name(), err)
		}
		if sid, err := r.Peek(int(n)); err == nil {
			b.add(ix, sid, e)
		} else if errors.Is(err, bufio.ErrBufferFull) {
			if cap(long) < int(n) {
				long = make([]byte, n)
			}
			if _, err := io.ReadFull(r, long[:n]); err != nil {
				return nil, 0, fmt.Errorf("read spilled events of %s: %w", f.Name(), err)
			}
			b.add(ix, long[:n], e)
			continue
		} else {
			return nil, 0, fmt.Errorf("read spilled events of %s: %w", f.Name(), err)
		}
		if _, err := r.Discard(int(n)); err != nil {
			return nil, 0, fmt.Errorf("read spilled events of %s: %w", f.Name(), err)
		}
	}
	// The shard is in memory: its file is not needed any more.
	if err := s.closeFile(i); err != nil {
		return nil, 0, err
	}
	return b, b.sessions.len(), nil
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
