package speed

import (
	"fmt"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/lambdarec/lambdarec/internal/gclayout"
)

// TestSessionPointersFirst keeps session's fields that hold pointers before
// those that hold none (model.Session, in place, counts as one that holds
// pointers; its own test keeps its pointers first): the collector scans an
// object up to its last pointer, and the layer holds one per session.
func TestSessionPointersFirst(t *testing.T) {
	if f, after, ok := gclayout.PointerAfterScalar(reflect.TypeFor[session]()); ok {
		t.Fatalf("session.%s holds a pointer after session.%s, which holds none", f, after)
	}
}

// TestSessionSizeClass keeps a session within the allocator's 352-byte
// size class (it was 416 before its model.Session kept its ids in one
// byte array and its dictionaries by 4-byte serials): the layer holds one
// per session, and the collector marks every byte of the class's slot.
func TestSessionSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > 352 {
		t.Fatalf("session is %d bytes: past the 352-byte size class", n)
	}
}

// TestWatchersHoldNoPointer keeps the rows' watcher lists pointer-free: a
// live session is listed under every row its view read.
func TestWatchersHoldNoPointer(t *testing.T) {
	f, _ := reflect.TypeFor[processor]().FieldByName("watchers")
	if gclayout.HoldsPointer(f.Type.Elem().Elem()) {
		t.Fatal("the rows' watcher lists hold pointers")
	}
}

// TestSlotsFollowLiveSessions: a session holds a slot (processor.slots)
// while its view's rows are watched, and gives it back when it expires, is
// evicted or is forgotten, so the slots never keep a session the partition
// no longer holds, and slots are reused.
func TestSlotsFollowLiveSessions(t *testing.T) {
	lim := defaultLimits()
	lim.maxSessions = 20
	f := newFeeder(t, lim, 0, 1)
	maxUsed := 0
	check := func(when string) {
		t.Helper()
		used := 0
		for i, s := range f.p.slots {
			if s == nil {
				continue
			}
			used++
			if !s.live || s.gone || s.slot != uint32(i+1) || f.p.parts[s.part.id].sessions[s.ms.ID()] != s {
				t.Fatalf("%s: slot %d holds a session that is not live and held (live %v, gone %v, slot %d)", when, i, s.live, s.gone, s.slot)
			}
		}
		if used != len(f.p.slots)-len(f.p.freeSlots) {
			t.Fatalf("%s: %d slots used, %d of %d free", when, used, len(f.p.freeSlots), len(f.p.slots))
		}
		maxUsed = max(maxUsed, used)
		if live, _ := f.counts(); used > live {
			t.Fatalf("%s: %d slots used, %d live sessions", when, used, live)
		}
	}
	at := t0
	for round := range 4 {
		for i := range 50 {
			at = at.Add(time.Second)
			part := int32(i % 2)
			f.add(part, fmt.Sprintf("s%d-%d", round, i), fmt.Sprintf("i%d", i%7), at)
			f.add(part, fmt.Sprintf("s%d-%d", round, i), fmt.Sprintf("i%d", i%5+7), at)
			if i%10 == 9 {
				f.p.appendViews(nil, at)
				check(fmt.Sprintf("round %d, session %d", round, i))
			}
		}
		at = at.Add(time.Hour) // every session of the round expires at the next record
	}
	if maxUsed < 10 {
		t.Fatalf("at most %d slots used: the views were not watched", maxUsed)
	}
	if n := len(f.p.slots); n > 2*lim.maxSessions {
		t.Fatalf("%d slots for at most %d live sessions: not reused", n, lim.maxSessions)
	}
	f.p.drop([]int32{0, 1})
	check("after drop")
}
