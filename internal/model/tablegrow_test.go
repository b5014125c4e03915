package model

import (
	"testing"
	"unsafe"
)

// TestTablesGrowIncrementally fills a pairTable and a userTable past 3/4 of
// 1024 slots: the insert that grows them and the next must move at most
// 2·growSteps (128) of the old entries, not rehash all 768, and every entry
// must stay readable, by get and by slot, while the rest move over, with
// new keys added in between, until the old table is gone.
func TestTablesGrowIncrementally(t *testing.T) {
	t.Run("pairTable", func(t *testing.T) {
		var tb pairTable
		key := func(i int) uint64 { return pairKey(uint32(i), uint32(i+1000)) }
		checkGrowth(t, growOps{
			set: func(i int, v int64) {
				j, _ := tb.slot(key(i))
				tb.ents[j].val = v
			},
			get: func(i int) (int64, bool) { return tb.get(key(i)), true },
			slot: func(i int) (int64, bool) {
				j, added := tb.slot(key(i))
				return tb.ents[j].val, added
			},
			len:     tb.len,
			growing: func() bool { return tb.old != nil },
			size:    func() int { return len(tb.ents) },
			full:    func(i int) bool { return tb.ents[i].key != 0 },
		})
		n := 0
		for k, v := range tb.all {
			if v != 0 && k != key(int(v)-1) {
				t.Fatalf("all yields %x=%d", k, v)
			}
			n++
		}
		if n != tb.len() {
			t.Fatalf("all yields %d entries, len %d", n, tb.len())
		}
	})
	t.Run("userTable", func(t *testing.T) {
		var tb userTable
		key := func(i int) uint64 { return uint64(i)<<32 | uint64(i+7) }
		checkGrowth(t, growOps{
			set: func(i int, v int64) {
				e, _ := tb.slot(key(i))
				e.weight = v
			},
			get: func(i int) (int64, bool) {
				e, ok := tb.get(key(i))
				return e.weight, ok
			},
			slot: func(i int) (int64, bool) {
				e, added := tb.slot(key(i))
				return e.weight, added
			},
			len:     tb.len,
			growing: func() bool { return tb.old != nil },
			size:    func() int { return len(tb.ents) },
			full:    func(i int) bool { return tb.ents[i].key != 0 },
		})
	})
	t.Run("userTable reads", func(t *testing.T) {
		// Keys read through slot right after the growth began move over
		// at once; the growth must not move them again.
		var tb userTable
		key := func(i int) uint64 { return uint64(i)<<32 | uint64(i+7) }
		for i := range 769 {
			e, _ := tb.slot(key(i))
			e.weight = int64(i + 1)
		}
		for i := range 769 {
			if e, added := tb.slot(key(i)); added || e.weight != int64(i+1) {
				t.Fatalf("slot(key %d): added %v, weight %d, want %d", i, added, e.weight, i+1)
			}
		}
		for n := 769; tb.old != nil; n++ {
			tb.slot(key(n))
		}
		countEnts(t, len(tb.ents), tb.len(), func(i int) bool { return tb.ents[i].key != 0 })
	})
	t.Run("pairTable deletes", func(t *testing.T) {
		// A key that the growth moved, then deleted, is absent: its copy
		// left in the old table is stale.
		var tb pairTable
		key := func(i int) uint64 { return pairKey(uint32(i), uint32(i+1000)) }
		for i := range 769 {
			j, _ := tb.slot(key(i))
			tb.ents[j].val = int64(i + 1)
		}
		deleted := 0
		for n := 769; tb.old != nil; n++ {
			if tb.slot(key(n)); tb.old == nil {
				break
			}
			for j, e := range tb.old[:tb.moved] {
				if e.key == 0 || e.key == movedKey || tb.get(e.key) == 0 {
					continue
				}
				i, added := tb.slot(e.key)
				if added {
					t.Fatalf("slot(%x), moved from old slot %d: added", e.key, j)
				}
				tb.del(i)
				deleted++
				if got := tb.get(e.key); got != 0 {
					t.Fatalf("get(%x) after its deletion = %d", e.key, got)
				}
				if i, added := tb.slot(e.key); !added {
					t.Fatalf("slot(%x) after its deletion: not added", e.key)
				} else {
					tb.del(i)
				}
				break
			}
		}
		if deleted == 0 {
			t.Fatal("no key deleted while the table grew")
		}
		countEnts(t, len(tb.ents), tb.len(), func(i int) bool { return tb.ents[i].key != 0 })
	})
}

// growOps are a table's operations on its i-th test key, for checkGrowth:
// set stores v under key i, get reads it (and whether it is there), slot
// reads it through slot (which moves it over while the table grows; added
// if it was absent), len counts the entries, growing reports an old table
// still there, size and full describe the new table's slots.
type growOps struct {
	set     func(i int, v int64)
	get     func(i int) (int64, bool)
	slot    func(i int) (int64, bool)
	len     func() int
	growing func() bool
	size    func() int
	full    func(i int) bool
}

// checkGrowth fills a table with 768 keys (3/4 of 1024 slots), makes it
// grow, checks the growing step (checkGrowStep), then adds keys one by one
// until the old table is gone: every key stays readable by get and by slot
// meanwhile, len counts every key, and the slots hold len entries at the
// end.
func checkGrowth(t *testing.T, tb growOps) {
	t.Helper()
	for i := range 768 {
		tb.set(i, int64(i+1))
	}
	tb.slot(768)  // grows
	tb.slot(1000) // moves at most growSteps (64) old slots
	checkGrowStep(t, tb.size(), tb.full)
	for n := 770; tb.growing(); n++ {
		if n > 770+1024 {
			t.Fatal("the old table is still there after 1024 more inserts")
		}
		for i := range 768 {
			if got, ok := tb.get(i); !ok || got != int64(i+1) {
				t.Fatalf("with %d keys: get(key %d) = %d, %v, want %d", n, i, got, ok, i+1)
			}
		}
		// Read one old key through slot (it moves over), and the rest
		// must still be found where they are.
		if v, added := tb.slot(n % 768); added || v != int64(n%768+1) {
			t.Fatalf("slot(key %d): added %v, value %d, want %d", n%768, added, v, n%768+1)
		}
		tb.slot(n)
		if tb.len() != n+1 {
			t.Fatalf("len %d, want %d", tb.len(), n+1)
		}
	}
	countEnts(t, tb.size(), tb.len(), tb.full)
}

// checkGrowStep fails the test unless the table grew to 2048 slots and the
// growing insert and the next moved at most 130 entries into them (two
// steps of growSteps, and the two inserts).
func checkGrowStep(t *testing.T, size int, full func(i int) bool) {
	t.Helper()
	if inNew := fullSlots(size, full); size != 2048 || inNew > 130 {
		t.Fatalf("after the growing insert and one more: %d slots, %d entries in them, want 2048 and at most 130", size, inNew)
	}
}

// countEnts fails t unless n of a table's size slots are full.
func countEnts(t *testing.T, size, n int, full func(i int) bool) {
	t.Helper()
	if c := fullSlots(size, full); c != n {
		t.Fatalf("%d full slots for %d entries", c, n)
	}
}

// fullSlots counts the slots of size for which full is true.
func fullSlots(size int, full func(i int) bool) int {
	c := 0
	for i := range size {
		if full(i) {
			c++
		}
	}
	return c
}

// TestTableEntsStartWithKey: openTable reads an entry's key as its first
// 8 bytes (entKey), so every tableEnt must start with its uint64 key.
func TestTableEntsStartWithKey(t *testing.T) {
	p := pairEnt{key: 0x0123456789abcdef, val: 7}
	u := userEnt{key: 0xfedcba9876543210, v: userItem{weight: 9}}
	if unsafe.Offsetof(p.key) != 0 || unsafe.Offsetof(u.key) != 0 || entKey(&p) != p.key || entKey(&u) != u.key {
		t.Fatalf("entKey reads %x and %x, want %x and %x (key offsets %d, %d)",
			entKey(&p), entKey(&u), p.key, u.key, unsafe.Offsetof(p.key), unsafe.Offsetof(u.key))
	}
}
