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
// part anyway); a spilled event takes 37 bytes plus its session id. The
// model equals one Builder over every event (TestSpillEqualsBuild).
type Spill struct {
	a     *Accumulator
	files []*os.File
	w     []*bufio.Writer
	n     []int
	buf   []byte
	err   error
	// the previous event's item and user ids: consecutive events often
	// repeat them.
	lastItem, lastUser uint32
	started            bool
}

// spillRecord is the fixed part of a spilled event: hash, time, offset (8
// bytes each), partition, item, user (4 each), kind (1), then the session
// id's length as a uvarint and its bytes.
const spillRecord = 8 + 8 + 8 + 4 + 4 + 4 + 1

// Spill returns a Spill of shards shards, in files created in dir (the
// system's temporary directory when empty). Close removes them.
func (a *Accumulator) Spill(dir string, shards int) (*Spill, error) {
	if shards < 1 {
		return nil, fmt.Errorf("model: spill into %d shards", shards)
	}
	s := &Spill{a: a, buf: make([]byte, 0, 256)}
	for range shards {
		f, err := os.CreateTemp(dir, "lambdarec-batch-shard-*")
		if err != nil {
			return nil, errors.Join(fmt.Errorf("create spill file: %w", err), s.Close())
		}
		s.files = append(s.files, f)
		s.w = append(s.w, bufio.NewWriterSize(f, 256<<10))
		s.n = append(s.n, 0)
	}
	return s, nil
}

// Add spills e to the shard of its session. A write error sticks: Build
// returns it.
func (s *Spill) Add(e Event) {
	if s.err != nil {
		return
	}
	m := s.a.m
	if !s.started || m.items.str(s.lastItem) != e.ItemID {
		s.lastItem = m.items.intern(e.ItemID)
	}
	if !s.started || m.users.users.str(s.lastUser) != e.UserID {
		s.lastUser = m.users.users.intern(e.UserID)
	}
	s.started = true
	shard := EventIDHash(e.SessionID) % uint64(len(s.w))
	b := s.buf[:spillRecord]
	binary.LittleEndian.PutUint64(b[0:], EventIDHash(e.EventID))
	binary.LittleEndian.PutUint64(b[8:], uint64(e.Time))
	binary.LittleEndian.PutUint64(b[16:], uint64(e.Offset))
	binary.LittleEndian.PutUint32(b[24:], uint32(e.Partition))
	binary.LittleEndian.PutUint32(b[28:], s.lastItem)
	binary.LittleEndian.PutUint32(b[32:], s.lastUser)
	b[36] = byte(e.Kind)
	b = binary.AppendUvarint(b, uint64(len(e.SessionID)))
	b = append(b, e.SessionID...)
	s.buf = b[:0]
	if _, err := s.w[shard].Write(b); err != nil {
		s.err = fmt.Errorf("spill events: %w", err)
	}
	s.n[shard]++
}

// Build reads each shard back into a Builder of its sessions, calls each
// with it (before Build: SessionSpans), then adds it to the accumulator.
// The shards are read by a goroutine of their own, one shard ahead of the
// build: the next shard is decoded while the current one is built and
// merged, so at most two shards' events are in memory at once. The Spill
// must not be used afterwards but still be closed.
func (s *Spill) Build(each func(b *Builder)) error {
	if s.err != nil {
		return s.err
	}
	type part struct {
		b   *Builder
		err error
	}
	parts := make(chan part)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(parts)
		for i := range s.files {
			b, err := s.readShard(i)
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
		s.a.Add(p.b)
	}
	return nil
}

// readShard reads shard i back into a Builder of its sessions and removes
// its file. It touches only the new Builder and the shard's file: the item
// and user ids in the records are interned already.
func (s *Spill) readShard(i int) (*Builder, error) {
	f := s.files[i]
	if err := s.w[i].Flush(); err != nil {
		return nil, fmt.Errorf("spill events: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read spilled events: %w", err)
	}
	b := s.a.Builder()
	b.Grow(s.n[i])
	r := bufio.NewReaderSize(f, 1<<20)
	var rec [spillRecord]byte
	var sid []byte
	for range s.n[i] {
		if _, err := io.ReadFull(r, rec[:]); err != nil {
			return nil, fmt.Errorf("read spilled events of %s: %w", f.Name(), err)
		}
		n, err := binary.ReadUvarint(r)
		if err != nil || n > 1<<20 {
			return nil, fmt.Errorf("read spilled events of %s: session id length %d: %v", f.Name(), n, err)
		}
		if uint64(cap(sid)) < n {
			sid = make([]byte, n)
		}
		sid = sid[:n]
		if _, err := io.ReadFull(r, sid); err != nil {
			return nil, fmt.Errorf("read spilled events of %s: %w", f.Name(), err)
		}
		b.add(sid, bevent{
			hash:      binary.LittleEndian.Uint64(rec[0:]),
			time:      int64(binary.LittleEndian.Uint64(rec[8:])),
			offset:    int64(binary.LittleEndian.Uint64(rec[16:])),
			partition: int32(binary.LittleEndian.Uint32(rec[24:])),
			item:      binary.LittleEndian.Uint32(rec[28:]),
			user:      binary.LittleEndian.Uint32(rec[32:]),
			next:      -1,
			kind:      schemas.Kind(rec[36]),
		})
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
	s.files[i], s.w[i] = nil, nil
	return errors.Join(f.Close(), os.Remove(f.Name()))
}

// Close removes the spill files that remain.
func (s *Spill) Close() error {
	var errs []error
	for i := range s.files {
		if err := s.closeFile(i); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
