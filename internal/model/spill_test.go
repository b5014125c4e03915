package model

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/lambdarec/lambdarec/schemas"
)

// TestSpillEqualsBuild: a model built from events spilled to session-hash
// shards in files equals the one Builder over every event, for any number
// of shards, and its session spans are every session's; the files are gone
// afterwards.
func TestSpillEqualsBuild(t *testing.T) {
	p := DefaultParams()
	p.MaxSessionEvents = 8
	for seed := range uint64(4) {
		r := rand.New(rand.NewPCG(seed, 5))
		st := genStream(r, 3, 60, 40, 3000)
		want, wantSpans := referenceBuild(t, p, st.events)
		for _, shards := range []int{1, 2, 5} {
			dir := t.TempDir()
			a, err := NewAccumulator(p)
			if err != nil {
				t.Fatal(err)
			}
			s, err := a.Spill(dir, shards)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range st.events {
				s.Add(e)
			}
			spans := map[string]Span{}
			if err := s.Build(func(b *Builder) {
				// As the batch run gathers them: from the build.
				b.EachSpan(func(id string, sp Span) {
					if _, dup := spans[id]; dup {
						t.Errorf("seed %d, %d shards: session %s in two shards", seed, shards, id)
					}
					spans[id] = sp
				})
			}); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			checkSpillBuild(t, fmt.Sprintf("seed %d, %d shards", seed, shards), a.Model(), spans, want, wantSpans)
			if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
				t.Fatalf("seed %d, %d shards: %d spill files left (%v)", seed, shards, len(left), err)
			}
		}
	}
}

// finishedSpill spills a random stream of 3,000 events (seed) into shards
// files in a new directory, written out and ready to build.
func finishedSpill(t *testing.T, seed uint64, shards int) (*Spill, string) {
	t.Helper()
	st := genStream(rand.New(rand.NewPCG(seed, seed)), 3, 60, 40, 3000)
	dir := t.TempDir()
	a, err := NewAccumulator(DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	s, err := a.Spill(dir, shards)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range st.events {
		s.Add(e)
	}
	if err := s.finish(); err != nil {
		t.Fatal(err)
	}
	return s, dir
}

// TestSpillBuildReadError: a spill file cut short makes Build return an
// error (the shards are read ahead by a goroutine of their own, which
// stops), and Close still removes every file.
func TestSpillBuildReadError(t *testing.T) {
	s, dir := finishedSpill(t, 7, 3)
	if err := s.files[1].Truncate(spillRecord + 3); err != nil {
		t.Fatal(err)
	}
	built := 0
	err := s.Build(func(*Builder) { built++ })
	if err == nil {
		t.Fatal("Build of a truncated spill file: no error")
	}
	if built != 1 {
		t.Errorf("Build of a spill whose second file is cut short built %d parts, want 1", built)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
		t.Fatalf("%d spill files left (%v)", len(left), err)
	}
}

// TestSpillBuildCorruptRecord: a spilled record whose item, user or session
// id length is out of range makes Build return an error instead of building
// (or panicking on) a wrong model.
func TestSpillBuildCorruptRecord(t *testing.T) {
	for _, field := range []struct {
		name string
		at   int64
	}{{"item", 28}, {"user", 32}, {"session id length", spillRecord}} {
		s, dir := finishedSpill(t, 9, 2)
		// The first record of shard 0.
		if _, err := s.files[0].WriteAt([]byte{0xff, 0xff, 0xff, 0x7f}, field.at); err != nil {
			t.Fatal(err)
		}
		if err := s.Build(nil); err == nil {
			t.Errorf("Build of a spill with a corrupt %s: no error", field.name)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
			t.Fatalf("%d spill files left (%v)", len(left), err)
		}
	}
}

// TestSpillLongSessionID: a session id longer than the read buffer is read
// back whole.
func TestSpillLongSessionID(t *testing.T) {
	p := DefaultParams()
	long := strings.Repeat("s", spillReadSize+1000)
	var evs []Event
	for i := range 50 {
		sid := "short"
		if i%3 == 0 {
			sid = long
		}
		evs = append(evs, Event{EventID: "e" + strconv.Itoa(i), SessionID: sid, UserID: "u", ItemID: "i" + strconv.Itoa(i%7),
			Kind: schemas.KindPageView, Time: 1_700_000_000_000_000 + int64(i)*1_000_000, Offset: int64(i)})
	}
	want, err := Recompute(p, evs)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAccumulator(p)
	if err != nil {
		t.Fatal(err)
	}
	s, err := a.Spill(t.TempDir(), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, e := range evs {
		s.Add(e)
	}
	sessions := map[string]bool{}
	if err := s.Build(func(b *Builder) { b.EachSpan(func(id string, _ Span) { sessions[id] = true }) }); err != nil {
		t.Fatal(err)
	}
	if d := a.Model().Diff(want); d != "" {
		t.Fatal(d)
	}
	if !sessions[long] || !sessions["short"] || len(sessions) != 2 {
		t.Fatalf("sessions read back: %d (long: %v, short: %v)", len(sessions), sessions[long], sessions["short"])
	}
}

// chunkRows returns a func adding events to s as the batch's page scan
// does (AddChunkRow): in chunks of size rows, each row with the first row
// of its chunk with its session id, found by a map.
func chunkRows(s *Spill, size int) func(Event) {
	first := map[string]int{}
	row := 0
	return func(e Event) {
		if row == size {
			row = 0
			clear(first)
		}
		f, ok := first[e.SessionID]
		if !ok {
			f = row
			first[e.SessionID] = row
		}
		s.AddChunkRow(e, EventIDHash(e.EventID), EventIDHash(e.SessionID), row, f)
		row++
	}
}

// TestSpillChunkRowsEqualBuild: events spilled by AddChunkRow, a repeated
// session spilled as a reference to an earlier record of its shard, build
// the model of one Builder over every event, with every session's span,
// for chunks of one row (no reference), a few rows and more rows than a
// shard's block holds, into one or several shards, and with Add's records
// between the chunks.
func TestSpillChunkRowsEqualBuild(t *testing.T) {
	p := DefaultParams()
	p.MaxSessionEvents = 8
	for seed := range uint64(3) {
		st := genStream(rand.New(rand.NewPCG(seed, 11)), 3, 60, 40, 6000)
		want, wantSpans := referenceBuild(t, p, st.events)
		for _, shards := range []int{1, 3} {
			for _, size := range []int{1, 7, 500, 6000} {
				a, err := NewAccumulator(p)
				if err != nil {
					t.Fatal(err)
				}
				s, err := a.Spill(t.TempDir(), shards)
				if err != nil {
					t.Fatal(err)
				}
				add := chunkRows(s, size)
				for i, e := range st.events {
					if size == 7 && i%50 == 49 {
						s.Add(e) // a record without a reference between references
						continue
					}
					add(e)
				}
				spans := map[string]Span{}
				if err := s.Build(func(b *Builder) {
					b.EachSpan(func(id string, sp Span) { spans[id] = sp })
				}); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				checkSpillBuild(t, fmt.Sprintf("seed %d, %d shards, chunks of %d", seed, shards, size), a.Model(), spans, want, wantSpans)
			}
		}
	}
}

// TestSpillBuildBadReference: a record referring to a session further back
// than the records of its shard read so far fails Build.
func TestSpillBuildBadReference(t *testing.T) {
	a, err := NewAccumulator(DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s, err := a.Spill(dir, 1)
	if err != nil {
		t.Fatal(err)
	}
	add := chunkRows(s, 10)
	for i := range 4 {
		add(Event{EventID: "e" + strconv.Itoa(i), SessionID: "s", UserID: "u", ItemID: "i",
			Kind: schemas.KindPageView, Time: 1_700_000_000_000_000, Offset: int64(i)})
	}
	if err := s.finish(); err != nil {
		t.Fatal(err)
	}
	// The second record refers one back; make it two.
	if _, err := s.files[0].WriteAt([]byte{2<<1 | 1}, int64(spillRecord+1+len("s")+spillRecord)); err != nil {
		t.Fatal(err)
	}
	if err := s.Build(nil); err == nil {
		t.Error("Build of a record referring past its shard's start: no error")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// referenceBuild is what a spill must equal: one Builder over every event,
// its model and its session spans.
func referenceBuild(t *testing.T, p Params, events []Event) (*Model, map[string]Span) {
	t.Helper()
	ref, err := NewBuilder(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		ref.Add(e)
	}
	spans := map[string]Span{}
	for s, sp := range ref.SessionSpans() {
		spans[s] = sp
	}
	return ref.Build(), spans
}

// checkSpillBuild fails the test unless a spill's model and session spans
// equal the reference's (referenceBuild); what names the case.
func checkSpillBuild(t *testing.T, what string, got *Model, spans map[string]Span, want *Model, wantSpans map[string]Span) {
	t.Helper()
	if d := got.Diff(want); d != "" {
		t.Fatalf("%s: %s", what, d)
	}
	if len(spans) != len(wantSpans) {
		t.Fatalf("%s: %d sessions, want %d", what, len(spans), len(wantSpans))
	}
	for id, sp := range wantSpans {
		if spans[id] != sp {
			t.Fatalf("%s: session %s spans %v, want %v", what, id, spans[id], sp)
		}
	}
}

// TestSpillBuildShardErrors: Build returns the error of a damaged shard
// whichever reader read it — the first shard's, the second's (read by a
// goroutine of its own, at once with the first) or a later one's — and
// the files are closed and removed cleanly after.
func TestSpillBuildShardErrors(t *testing.T) {
	for _, bad := range []int{0, 1, 2} {
		a, err := NewAccumulator(DefaultParams())
		if err != nil {
			t.Fatal(err)
		}
		s, err := a.Spill(t.TempDir(), 3)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3000 {
			s.Add(Event{EventID: "e" + strconv.Itoa(i), SessionID: "s" + strconv.Itoa(i%97), UserID: "u" + strconv.Itoa(i%13),
				ItemID: "i" + strconv.Itoa(i%31), Kind: schemas.KindPageView, Time: 1_700_000_000_000_000 + int64(i), Offset: int64(i)})
		}
		if err := s.finish(); err != nil {
			t.Fatal(err)
		}
		if s.n[bad] < 2 {
			t.Fatalf("shard %d holds %d records", bad, s.n[bad])
		}
		fi, err := s.files[bad].Stat()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.files[bad].Truncate(fi.Size() / 2); err != nil {
			t.Fatal(err)
		}
		parts := 0
		err = s.Build(func(*Builder) { parts++ })
		if err == nil || !strings.Contains(err.Error(), "read spilled events") {
			t.Errorf("shard %d damaged: Build returned %v", bad, err)
		}
		if parts > bad {
			t.Errorf("shard %d damaged: %d parts built", bad, parts)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
