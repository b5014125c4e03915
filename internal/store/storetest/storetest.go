// Package storetest owns the conformance suite of the serving store: Run checks
// a store.Store backend against the interface's contract, and Bench measures its
// hot paths. Every backend (in-process, ClickHouse, Redis) runs both.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// Run runs the conformance suite. newStore returns a new, empty store for
// one subtest; the suite closes it (closing twice must be harmless, so
// newStore may also register a Close with t.Cleanup).
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Empty", testEmpty},
		{"PublishThenRead", testPublishThenRead},
		{"KBounds", testKBounds},
		{"PublishInvalid", testPublishInvalid},
		{"PublishTwice", testPublishTwice},
		{"Replace", testReplace},
		{"UserItems", testUserItems},
		{"AtomicReplace", testAtomicReplace},
		{"Cleanup", testCleanup},
		{"ReturnedSlicesAreCopies", testCopies},
		{"SessionVersioning", testSessionVersioning},
		{"SessionInvalid", testSessionInvalid},
		{"SessionExplanation", testSessionExplanation},
		{"UpsertSessions", testUpsertSessions},
		{"ConcurrentSessions", testConcurrentSessions},
		{"ExpireSessions", testExpireSessions},
		{"ExpireSessionsBoundary", testExpireBoundary},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s)
		})
	}
}

// ts is a fixed time with a sub-second part, so backends must keep nanoseconds.
var ts = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

func scored(prefix string, n int) []store.Scored {
	out := make([]store.Scored, n)
	for i := range out {
		out[i] = store.Scored{Item: fmt.Sprintf("%s%d", prefix, i), Score: float64(n-i) + 0.25}
	}
	return out
}

func sampleBatch(id string) *store.BatchView {
	return &store.BatchView{
		Meta: store.BatchMeta{
			BatchID:            id,
			SnapshotID:         8123456789012345678,
			Boundary:           map[int32]int64{0: 41, 1: 0, 5: 1 << 40},
			Events:             123456,
			CreatedAt:          ts,
			SourceMaxEventTime: ts.Add(-time.Minute),
		},
		Neighbors: map[string][]store.Scored{
			"item-1":         scored("n1-", 5),
			"item-2":         scored("n2-", 1),
			"ünïcödé 'q' \\": scored("n3-", 3),
		},
		UserRecs: map[string][]store.Scored{
			"user-1": scored("u1-", 4),
			"user-2": {{Item: "x", Score: -1.5}, {Item: "y", Score: -2}},
		},
		Popular: scored("p-", 7),
	}
}

func ctx(t testing.TB) context.Context { return t.Context() }

func equalMeta(t *testing.T, got, want store.BatchMeta) {
	t.Helper()
	if got.BatchID != want.BatchID || got.SnapshotID != want.SnapshotID || got.Events != want.Events {
		t.Errorf("meta = %+v, want %+v", got, want)
	}
	if !got.CreatedAt.Equal(want.CreatedAt) || !got.SourceMaxEventTime.Equal(want.SourceMaxEventTime) {
		t.Errorf("meta times = %v, %v; want %v, %v", got.CreatedAt, got.SourceMaxEventTime, want.CreatedAt, want.SourceMaxEventTime)
	}
	if len(got.Boundary) != len(want.Boundary) {
		t.Errorf("boundary = %v, want %v", got.Boundary, want.Boundary)
	}
	for p, o := range want.Boundary {
		if g, ok := got.Boundary[p]; !ok || g != o {
			t.Errorf("boundary = %v, want %v", got.Boundary, want.Boundary)
			break
		}
	}
}

func equalScored(t *testing.T, what string, got, want []store.Scored) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func mustEmpty(t *testing.T, what string, got []store.Scored, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(got) != 0 {
		t.Errorf("%s = %v, want empty", what, got)
	}
}

func testEmpty(t *testing.T, s store.Store) {
	if m, ok, err := s.CurrentBatch(ctx(t)); err != nil || ok {
		t.Fatalf("CurrentBatch on an empty store = %+v, %v, %v; want false, nil", m, ok, err)
	}
	got, err := s.Similar(ctx(t), "item-1", 10)
	mustEmpty(t, "Similar", got, err)
	got, err = s.UserRecs(ctx(t), "user-1", 10)
	mustEmpty(t, "UserRecs", got, err)
	got, err = s.Popular(ctx(t), 10)
	mustEmpty(t, "Popular", got, err)
	if ids, err := s.RetainedBatches(ctx(t)); err != nil || len(ids) != 0 {
		t.Errorf("RetainedBatches = %v, %v; want none", ids, err)
	}
	if v, ok, err := s.Session(ctx(t), "nope"); err != nil || ok {
		t.Errorf("Session(unknown) = %+v, %v, %v; want false, nil", v, ok, err)
	}
	if _, err := s.ExpireSessions(ctx(t), ts); err != nil {
		t.Errorf("ExpireSessions on an empty store: %v", err)
	}
}

func testPublishThenRead(t *testing.T, s store.Store) {
	v := sampleBatch("b-1")
	want := sampleBatch("b-1") // the store may keep v
	if err := s.PublishBatch(ctx(t), v); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	m, ok, err := s.CurrentBatch(ctx(t))
	if err != nil || !ok {
		t.Fatalf("CurrentBatch = %v, %v; want true, nil", ok, err)
	}
	equalMeta(t, m, want.Meta)
	for item, list := range want.Neighbors {
		got, err := s.Similar(ctx(t), item, 100)
		if err != nil {
			t.Fatalf("Similar(%q): %v", item, err)
		}
		equalScored(t, "Similar("+item+")", got, list)
	}
	for user, list := range want.UserRecs {
		got, err := s.UserRecs(ctx(t), user, 100)
		if err != nil {
			t.Fatalf("UserRecs(%q): %v", user, err)
		}
		equalScored(t, "UserRecs("+user+")", got, list)
	}
	got, err := s.Popular(ctx(t), 100)
	if err != nil {
		t.Fatalf("Popular: %v", err)
	}
	equalScored(t, "Popular", got, want.Popular)

	got, err = s.Similar(ctx(t), "unknown-item", 10)
	mustEmpty(t, "Similar(unknown)", got, err)
	got, err = s.Similar(ctx(t), "", 10)
	mustEmpty(t, "Similar(empty)", got, err)
	got, err = s.UserRecs(ctx(t), "unknown-user", 10)
	mustEmpty(t, "UserRecs(unknown)", got, err)
	got, err = s.Similar(ctx(t), "user-1", 10) // a user id is not an item
	mustEmpty(t, "Similar(user id)", got, err)

	// The returned meta is the caller's.
	m.Boundary[0] = -7
	m2, _, _ := s.CurrentBatch(ctx(t))
	if m2.Boundary[0] != 41 {
		t.Errorf("modifying a returned boundary changed the store's: %v", m2.Boundary)
	}
}

func testKBounds(t *testing.T, s store.Store) {
	v := sampleBatch("b-k")
	if err := s.PublishBatch(ctx(t), v); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	full := scored("n1-", 5)
	for _, k := range []int{math.MinInt, -1, 0, 1, 3, 5, 6, 1000, math.MaxInt} {
		want := full[:max(0, min(k, len(full)))]
		got, err := s.Similar(ctx(t), "item-1", k)
		if err != nil {
			t.Fatalf("Similar(k=%d): %v", k, err)
		}
		equalScored(t, fmt.Sprintf("Similar(k=%d)", k), got, want)
		got, err = s.UserRecs(ctx(t), "user-1", k)
		if err != nil {
			t.Fatalf("UserRecs(k=%d): %v", k, err)
		}
		equalScored(t, fmt.Sprintf("UserRecs(k=%d)", k), got, scored("u1-", 4)[:max(0, min(k, 4))])
		got, err = s.Popular(ctx(t), k)
		if err != nil {
			t.Fatalf("Popular(k=%d): %v", k, err)
		}
		equalScored(t, fmt.Sprintf("Popular(k=%d)", k), got, scored("p-", 7)[:max(0, min(k, 7))])
	}
}

func testPublishInvalid(t *testing.T, s store.Store) {
	if err := s.PublishBatch(ctx(t), sampleBatch("good")); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	bad := map[string]*store.BatchView{
		"nil":           nil,
		"empty id":      sampleBatch(""),
		"empty item":    func() *store.BatchView { v := sampleBatch("b"); v.Neighbors["item-1"][2].Item = ""; return v }(),
		"empty key":     func() *store.BatchView { v := sampleBatch("b"); v.UserRecs[""] = scored("z", 1); return v }(),
		"NaN score":     func() *store.BatchView { v := sampleBatch("b"); v.Popular[0].Score = math.NaN(); return v }(),
		"infinite rank": func() *store.BatchView { v := sampleBatch("b"); v.UserRecs["user-1"][0].Score = math.Inf(1); return v }(),
	}
	for name, v := range bad {
		if err := s.PublishBatch(ctx(t), v); err == nil {
			t.Errorf("PublishBatch(%s) = nil, want an error", name)
		}
	}
	m, ok, err := s.CurrentBatch(ctx(t))
	if err != nil || !ok || m.BatchID != "good" {
		t.Fatalf("after invalid publishes CurrentBatch = %q, %v, %v; want good", m.BatchID, ok, err)
	}
	got, err := s.Similar(ctx(t), "item-1", 10)
	if err != nil {
		t.Fatal(err)
	}
	equalScored(t, "Similar after invalid publishes", got, scored("n1-", 5))
}

func testPublishTwice(t *testing.T, s store.Store) {
	if err := s.PublishBatch(ctx(t), sampleBatch("b-1")); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	if err := s.PublishBatch(ctx(t), sampleBatch("b-2")); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	for _, id := range []string{"b-1", "b-2"} {
		err := s.PublishBatch(ctx(t), sampleBatch(id))
		if !errors.Is(err, store.ErrBatchExists) {
			t.Errorf("publishing %s again = %v, want ErrBatchExists", id, err)
		}
	}
	m, _, err := s.CurrentBatch(ctx(t))
	if err != nil || m.BatchID != "b-2" {
		t.Errorf("CurrentBatch = %q, %v; want b-2", m.BatchID, err)
	}
	got, err := s.Similar(ctx(t), "item-1", 100)
	if err != nil {
		t.Fatal(err)
	}
	equalScored(t, "Similar after a refused republish", got, scored("n1-", 5))
}

func testReplace(t *testing.T, s store.Store) {
	if err := s.PublishBatch(ctx(t), sampleBatch("b-1")); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	v2 := &store.BatchView{
		Meta:      store.BatchMeta{BatchID: "b-2", SnapshotID: 2, Boundary: map[int32]int64{0: 99}, CreatedAt: ts.Add(time.Hour)},
		Neighbors: map[string][]store.Scored{"item-2": scored("new-", 2), "item-9": scored("nine-", 1)},
		// No user recs, no popular items: they must not leak from b-1.
	}
	if err := s.PublishBatch(ctx(t), v2); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	m, ok, err := s.CurrentBatch(ctx(t))
	if err != nil || !ok {
		t.Fatalf("CurrentBatch = %v, %v", ok, err)
	}
	equalMeta(t, m, store.BatchMeta{BatchID: "b-2", SnapshotID: 2, Boundary: map[int32]int64{0: 99}, CreatedAt: ts.Add(time.Hour)})
	got, err := s.Similar(ctx(t), "item-1", 10)
	mustEmpty(t, "Similar(item only in the old batch)", got, err)
	got, err = s.Similar(ctx(t), "item-2", 10)
	if err != nil {
		t.Fatal(err)
	}
	equalScored(t, "Similar(item-2)", got, scored("new-", 2))
	got, err = s.Similar(ctx(t), "item-9", 10)
	if err != nil {
		t.Fatal(err)
	}
	equalScored(t, "Similar(item-9)", got, scored("nine-", 1))
	got, err = s.UserRecs(ctx(t), "user-1", 10)
	mustEmpty(t, "UserRecs(user only in the old batch)", got, err)
	got, err = s.Popular(ctx(t), 10)
	mustEmpty(t, "Popular(none in the new batch)", got, err)
}

// testUserItems: what users' recommendations were scored from is published
// with the batch and read back in order; a batch without it (one published
// before it existed) answers nil for every user, also after one that had it.
func testUserItems(t *testing.T, s store.Store) {
	userItems := func(user string) []string {
		t.Helper()
		got, err := s.UserItems(ctx(t), user)
		if err != nil {
			t.Fatalf("UserItems(%q): %v", user, err)
		}
		return got
	}
	if got := userItems("user-1"); got != nil {
		t.Errorf("UserItems before any batch = %q, want nil", got)
	}
	v := sampleBatch("b-1")
	v.UserItems = map[string][]string{
		"user-1": {"item-2", "item-1", "ünïcödé 'q' \\"},
		"user-2": {"item-9"},
	}
	if err := s.PublishBatch(ctx(t), v); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	for user, want := range map[string][]string{
		"user-1": {"item-2", "item-1", "ünïcödé 'q' \\"}, "user-2": {"item-9"}, "unknown-user": nil,
	} {
		got := userItems(user)
		if !slices.Equal(got, want) {
			t.Errorf("UserItems(%q) = %q, want %q", user, got, want)
		}
		if got != nil {
			got[0] = "changed" // the caller's copy
			if again := userItems(user); again[0] != want[0] {
				t.Errorf("modifying UserItems(%q) changed the store's: %q", user, again)
			}
		}
	}
	if err := s.PublishBatch(ctx(t), sampleBatch("b-2")); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	if got := userItems("user-1"); got != nil {
		t.Errorf("UserItems in a batch without them = %q, want nil", got)
	}
	bad := sampleBatch("b-3")
	bad.UserItems = map[string][]string{"user-1": {"item-1", ""}}
	if err := s.PublishBatch(ctx(t), bad); err == nil {
		t.Errorf("PublishBatch with an empty user item = nil, want an error")
	}
	bad = sampleBatch("b-4")
	bad.UserItems = map[string][]string{"": {"item-1"}}
	if err := s.PublishBatch(ctx(t), bad); err == nil {
		t.Errorf("PublishBatch with an empty user key = nil, want an error")
	}
}

// genBatch builds batch number g: every key present, every item labelled "g<g>/".
func genBatch(g, keys, width int) *store.BatchView {
	v := &store.BatchView{
		Meta:      store.BatchMeta{BatchID: fmt.Sprintf("gen-%03d", g), SnapshotID: int64(g), Boundary: map[int32]int64{0: int64(g)}},
		Neighbors: make(map[string][]store.Scored, keys),
		UserRecs:  make(map[string][]store.Scored, keys),
		Popular:   scored(fmt.Sprintf("g%d/p", g), width),
	}
	for i := range keys {
		v.Neighbors[fmt.Sprintf("item-%d", i)] = scored(fmt.Sprintf("g%d/n%d-", g, i), width)
		v.UserRecs[fmt.Sprintf("user-%d", i)] = scored(fmt.Sprintf("g%d/u%d-", g, i), width)
	}
	return v
}

// generation returns the batch number every item of list is labelled with,
// or an error when list is empty or mixes batches.
func generation(list []store.Scored) (int, error) {
	if len(list) == 0 {
		return 0, errors.New("empty answer for a key present in every batch")
	}
	g := -1
	for _, s := range list {
		label, _, ok := strings.Cut(s.Item, "/")
		if !ok || !strings.HasPrefix(label, "g") {
			return 0, fmt.Errorf("unexpected item %q", s.Item)
		}
		n, err := strconv.Atoi(label[1:])
		if err != nil {
			return 0, fmt.Errorf("unexpected item %q", s.Item)
		}
		if g >= 0 && n != g {
			return 0, fmt.Errorf("answer mixes batches %d and %d: %v", g, n, list)
		}
		g = n
	}
	return g, nil
}

// testAtomicReplace publishes batches while readers read every kind of key:
// no answer may be empty, mix two batches, or go back to an older batch than
// one the same reader saw before (CurrentBatch included).
func testAtomicReplace(t *testing.T, s store.Store) {
	const keys, width, gens, readers = 40, 8, 6, 4
	if err := s.PublishBatch(ctx(t), genBatch(0, keys, width)); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	var done atomic.Bool
	var started atomic.Int64 // newest generation whose publish has begun
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	reads := make([]int, readers)
	var ready sync.WaitGroup // publishing starts once every reader has read
	ready.Add(readers)
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var once sync.Once
			defer once.Do(ready.Done)
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			seen := 0
			fail := func(err error) { errs <- fmt.Errorf("reader %d: %w", r, err) }
			for !done.Load() {
				var got []store.Scored
				var err error
				key := rng.IntN(keys)
				switch rng.IntN(4) {
				case 0:
					got, err = s.Similar(ctx(t), fmt.Sprintf("item-%d", key), width)
				case 1:
					got, err = s.UserRecs(ctx(t), fmt.Sprintf("user-%d", key), width)
				case 2:
					got, err = s.Popular(ctx(t), width)
				case 3:
					m, ok, err2 := s.CurrentBatch(ctx(t))
					if err2 != nil || !ok {
						fail(fmt.Errorf("CurrentBatch = %v, %v", ok, err2))
						return
					}
					got = []store.Scored{{Item: fmt.Sprintf("g%d/meta", m.SnapshotID)}}
				}
				if err != nil {
					fail(err)
					return
				}
				g, err := generation(got)
				if err != nil {
					fail(err)
					return
				}
				if g < seen {
					fail(fmt.Errorf("went back from batch %d to %d", seen, g))
					return
				}
				if upper := int(started.Load()); g > upper {
					fail(fmt.Errorf("saw batch %d before it was published", g))
					return
				}
				seen = g
				reads[r]++
				once.Do(ready.Done)
			}
		}()
	}
	ready.Wait()
	for g := 1; g <= gens; g++ {
		v := genBatch(g, keys, width)
		started.Store(int64(g))
		if err := s.PublishBatch(ctx(t), v); err != nil {
			t.Errorf("PublishBatch(%d): %v", g, err)
			break
		}
	}
	// Let the readers see the last batch too.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		got, err := s.Similar(ctx(t), "item-0", width)
		if g, _ := generation(got); err == nil && g == gens {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for r, n := range reads {
		if n == 0 {
			t.Errorf("reader %d made no read", r)
		}
	}
	got, err := s.Similar(ctx(t), "item-3", width)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := generation(got); err != nil || g != gens {
		t.Errorf("after the last publish Similar is from batch %d (%v), want %d", g, err, gens)
	}
	t.Logf("%d reads during %d publishes", reads, gens)
}

func testCleanup(t *testing.T, s store.Store) {
	const n = 5
	for g := 1; g <= n; g++ {
		if err := s.PublishBatch(ctx(t), genBatch(g, 3, 2)); err != nil {
			t.Fatalf("PublishBatch(%d): %v", g, err)
		}
	}
	ids, err := s.RetainedBatches(ctx(t))
	if err != nil {
		t.Fatalf("RetainedBatches: %v", err)
	}
	if len(ids) == 0 || ids[0] != genBatch(n, 0, 0).Meta.BatchID {
		t.Fatalf("RetainedBatches = %v, want the current batch first", ids)
	}
	if len(ids) > 3 {
		t.Errorf("RetainedBatches = %v, want at most the current and two previous", ids)
	}
	for g := 1; g <= n-3; g++ {
		if slices.Contains(ids, genBatch(g, 0, 0).Meta.BatchID) {
			t.Errorf("RetainedBatches = %v still holds batch %d", ids, g)
		}
	}
	got, err := s.Similar(ctx(t), "item-1", 5)
	if err != nil {
		t.Fatal(err)
	}
	if g, err := generation(got); err != nil || g != n {
		t.Errorf("Similar after cleanup is from batch %d (%v), want %d", g, err, n)
	}
}

func testCopies(t *testing.T, s store.Store) {
	if err := s.PublishBatch(ctx(t), sampleBatch("b-1")); err != nil {
		t.Fatal(err)
	}
	got, err := s.Similar(ctx(t), "item-1", 3)
	if err != nil {
		t.Fatal(err)
	}
	got[0].Item = "changed"
	_ = append(got[:1], store.Scored{Item: "appended"})
	again, err := s.Similar(ctx(t), "item-1", 5)
	if err != nil {
		t.Fatal(err)
	}
	equalScored(t, "Similar after modifying a returned slice", again, scored("n1-", 5))

	sv := session("s-1", 10)
	if err := s.UpsertSession(ctx(t), sv); err != nil {
		t.Fatal(err)
	}
	sv.Items[0].Item = "changed by caller" // the store must have copied
	sv.Purchased[0] = "changed"
	got2, _, err := s.Session(ctx(t), "s-1")
	if err != nil {
		t.Fatal(err)
	}
	equalSession(t, got2, session("s-1", 10))
	got2.Items[0].Item = "changed by reader"
	got3, _, err := s.Session(ctx(t), "s-1")
	if err != nil {
		t.Fatal(err)
	}
	equalSession(t, got3, session("s-1", 10))
}

func session(id string, offset int64) store.SessionView {
	return store.SessionView{
		SessionID: id,
		UserID:    "user-of-" + id,
		Items:     []store.Scored{{Item: fmt.Sprintf("rec-%s-%d", id, offset), Score: float64(offset) + 0.5}, {Item: "common", Score: 0.125}},
		Purchased: []string{fmt.Sprintf("bought-%d", offset)},
		EventTime: ts.Add(time.Duration(offset) * time.Millisecond),
		Partition: 3,
		Offset:    offset,
		UpdatedAt: ts.Add(time.Duration(offset)*time.Millisecond + 7*time.Microsecond),
	}
}

func equalSession(t *testing.T, got, want store.SessionView) {
	t.Helper()
	same := got.SessionID == want.SessionID && got.UserID == want.UserID &&
		got.Partition == want.Partition && got.Offset == want.Offset &&
		got.EventTime.Equal(want.EventTime) && got.UpdatedAt.Equal(want.UpdatedAt) &&
		(len(got.Items) == 0 && len(want.Items) == 0 || slices.Equal(got.Items, want.Items)) &&
		(len(got.Purchased) == 0 && len(want.Purchased) == 0 || slices.Equal(got.Purchased, want.Purchased))
	if !same {
		t.Errorf("session = %+v\nwant      %+v", got, want)
	}
}

// explanation is an encoded explanation of session(id, offset)'s two
// items, with counts that tell offsets apart.
func explanation(offset int64) []byte {
	return store.AppendExplanation(nil, &store.SessionExplanation{
		Recent: []store.RecentItem{{Item: "seen-0", TopCount: 9 + offset}, {Item: "seen-1", TopCount: 0}, {Item: "seen-2", TopCount: 1 << 40}},
		From: []store.ViewContribution{
			{Item: 0, Rank: 0, Count: 9 + offset, BatchCount: 4},
			{Item: 1, Rank: 0, Count: 3, BatchCount: 3},
			{Item: 0, Rank: 2, Count: 1<<40 - 1, BatchCount: 0},
		},
	})
}

// testSessionExplanation: a view's explanation is stored with it and read
// back by ExplainedSession (never by Session), of the same version as the
// view; a newer view without one leaves none behind; an explanation of an
// unknown format is rejected.
func testSessionExplanation(t *testing.T, s store.Store) {
	if _, ok, err := s.ExplainedSession(ctx(t), "nope"); err != nil || ok {
		t.Fatalf("ExplainedSession(unknown) = %v, %v; want false, nil", ok, err)
	}
	explained := func(id string) store.SessionView {
		t.Helper()
		v, ok, err := s.ExplainedSession(ctx(t), id)
		if err != nil || !ok {
			t.Fatalf("ExplainedSession(%q) = %v, %v; want found", id, ok, err)
		}
		return v
	}
	equalExplanation := func(got, want []byte) {
		t.Helper()
		if !bytes.Equal(got, want) {
			t.Fatalf("explanation = %x\nwant          %x", got, want)
		}
		if e, err := store.DecodeExplanation(got); err != nil || want != nil && e == nil {
			t.Fatalf("explanation read back does not decode: %v", err)
		}
	}
	v := session("s-x", 10)
	v.Explanation = explanation(10)
	if err := s.UpsertSession(ctx(t), v); err != nil {
		t.Fatal(err)
	}
	if got := mustSession(t, s, "s-x"); got.Explanation != nil {
		t.Errorf("Session returned an explanation: %x", got.Explanation)
	}
	got := explained("s-x")
	equalSession(t, got, session("s-x", 10))
	equalExplanation(got.Explanation, explanation(10))

	// An older version does not replace it, explanation included.
	old := session("s-x", 5)
	old.Explanation = explanation(5)
	if err := s.UpsertSessions(ctx(t), []store.SessionView{old}); err != nil {
		t.Fatal(err)
	}
	equalExplanation(explained("s-x").Explanation, explanation(10))

	// A newer version without one: none (not the older one's).
	if err := s.UpsertSession(ctx(t), session("s-x", 11)); err != nil {
		t.Fatal(err)
	}
	got = explained("s-x")
	equalSession(t, got, session("s-x", 11))
	equalExplanation(got.Explanation, nil)

	// Newest of a batch wins, with its own explanation.
	a, b := session("s-y", 20), session("s-y", 21)
	a.Explanation, b.Explanation = explanation(20), explanation(21)
	if err := s.UpsertSessions(ctx(t), []store.SessionView{b, a}); err != nil {
		t.Fatal(err)
	}
	equalExplanation(explained("s-y").Explanation, explanation(21))

	// An explanation of an unknown format is rejected.
	bad := session("s-bad", 1)
	bad.Explanation = []byte{99, 1, 2}
	if err := s.UpsertSession(ctx(t), bad); err == nil {
		t.Error("explanation of format 99 accepted")
	}
	if _, ok, err := s.ExplainedSession(ctx(t), "s-bad"); err != nil || ok {
		t.Errorf("a rejected view is stored: %v, %v", ok, err)
	}
}

func mustSession(t *testing.T, s store.Store, id string) store.SessionView {
	t.Helper()
	v, ok, err := s.Session(ctx(t), id)
	if err != nil || !ok {
		t.Fatalf("Session(%q) = %v, %v; want found", id, ok, err)
	}
	return v
}

func testSessionVersioning(t *testing.T, s store.Store) {
	if err := s.UpsertSession(ctx(t), session("s-1", 10)); err != nil {
		t.Fatalf("UpsertSession: %v", err)
	}
	equalSession(t, mustSession(t, s, "s-1"), session("s-1", 10))

	// An older offset is ignored.
	if err := s.UpsertSession(ctx(t), session("s-1", 5)); err != nil {
		t.Fatalf("UpsertSession(older): %v", err)
	}
	equalSession(t, mustSession(t, s, "s-1"), session("s-1", 10))

	// A replay of the same offset changes nothing.
	for range 3 {
		if err := s.UpsertSession(ctx(t), session("s-1", 10)); err != nil {
			t.Fatalf("UpsertSession(replay): %v", err)
		}
	}
	equalSession(t, mustSession(t, s, "s-1"), session("s-1", 10))

	// The same offset scored again later (rows it read changed) wins.
	rescored := session("s-1", 10)
	rescored.Items = []store.Scored{{Item: "rescored", Score: 2.5}}
	rescored.UpdatedAt = rescored.UpdatedAt.Add(time.Millisecond)
	if err := s.UpsertSession(ctx(t), rescored); err != nil {
		t.Fatalf("UpsertSession(rescored): %v", err)
	}
	equalSession(t, mustSession(t, s, "s-1"), rescored)
	for range 2 { // and its replay changes nothing
		if err := s.UpsertSession(ctx(t), rescored); err != nil {
			t.Fatalf("UpsertSession(rescored replay): %v", err)
		}
	}
	equalSession(t, mustSession(t, s, "s-1"), rescored)

	// A newer offset wins, also when its lists are empty.
	newer := session("s-1", 11)
	newer.Items, newer.Purchased, newer.UserID = nil, nil, ""
	if err := s.UpsertSession(ctx(t), newer); err != nil {
		t.Fatalf("UpsertSession(newer): %v", err)
	}
	equalSession(t, mustSession(t, s, "s-1"), newer)
	if err := s.UpsertSession(ctx(t), session("s-1", 10)); err != nil {
		t.Fatal(err)
	}
	equalSession(t, mustSession(t, s, "s-1"), newer)

	// Offset 0 is a valid first version; sessions are independent.
	if err := s.UpsertSession(ctx(t), session("s-2", 0)); err != nil {
		t.Fatal(err)
	}
	equalSession(t, mustSession(t, s, "s-2"), session("s-2", 0))
	equalSession(t, mustSession(t, s, "s-1"), newer)
	if v, ok, err := s.Session(ctx(t), "s-3"); err != nil || ok {
		t.Errorf("Session(unknown) = %+v, %v, %v", v, ok, err)
	}
	if v, ok, err := s.Session(ctx(t), ""); err != nil || ok {
		t.Errorf("Session(\"\") = %+v, %v, %v", v, ok, err)
	}
}

func testSessionInvalid(t *testing.T, s store.Store) {
	if err := s.UpsertSession(ctx(t), session("", 1)); err == nil {
		t.Error("UpsertSession with an empty id = nil, want an error")
	}
	if err := s.UpsertSession(ctx(t), session("neg", -1)); err == nil {
		t.Error("UpsertSession with a negative offset = nil, want an error")
	}
	batch := []store.SessionView{session("ok-1", 1), session("", 2)}
	if err := s.UpsertSessions(ctx(t), batch); err == nil {
		t.Error("UpsertSessions with an invalid view = nil, want an error")
	}
	if _, ok, err := s.Session(ctx(t), "ok-1"); err != nil || ok {
		t.Errorf("UpsertSessions stored part of a rejected batch: %v, %v", ok, err)
	}
	if _, ok, err := s.Session(ctx(t), "neg"); err != nil || ok {
		t.Errorf("a rejected session was stored: %v, %v", ok, err)
	}
}

func testUpsertSessions(t *testing.T, s store.Store) {
	if err := s.UpsertSessions(ctx(t), nil); err != nil {
		t.Fatalf("UpsertSessions(nil): %v", err)
	}
	const n = 500
	// Each session appears three times in one call, in shuffled order; the
	// greatest offset must win.
	var batch []store.SessionView
	for i := range n {
		id := fmt.Sprintf("sess-%d", i)
		base := int64(i * 10)
		batch = append(batch, session(id, base+1), session(id, base+3), session(id, base+2))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
	if err := s.UpsertSessions(ctx(t), batch); err != nil {
		t.Fatalf("UpsertSessions: %v", err)
	}
	for i := range n {
		id := fmt.Sprintf("sess-%d", i)
		equalSession(t, mustSession(t, s, id), session(id, int64(i*10+3)))
	}
	// A second call: older versions for even sessions (ignored), newer for odd.
	batch = batch[:0]
	for i := range n {
		id := fmt.Sprintf("sess-%d", i)
		if i%2 == 0 {
			batch = append(batch, session(id, int64(i*10)))
		} else {
			batch = append(batch, session(id, int64(i*10+5)))
		}
	}
	if err := s.UpsertSessions(ctx(t), batch); err != nil {
		t.Fatalf("UpsertSessions: %v", err)
	}
	for i := range n {
		id := fmt.Sprintf("sess-%d", i)
		want := session(id, int64(i*10+3))
		if i%2 == 1 {
			want = session(id, int64(i*10+5))
		}
		equalSession(t, mustSession(t, s, id), want)
	}
}

func testConcurrentSessions(t *testing.T, s store.Store) {
	const writers, perWriter, sessions = 4, 30, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*2)
	for w := range writers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				// Writers interleave offsets of the same sessions.
				off := int64(i*writers + w)
				batch := make([]store.SessionView, 0, sessions)
				for j := range sessions {
					batch = append(batch, session(fmt.Sprintf("c-%d", j), off))
				}
				if err := s.UpsertSessions(ctx(t), batch); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := range perWriter {
				v, ok, err := s.Session(ctx(t), fmt.Sprintf("c-%d", i%sessions))
				if err != nil {
					errs <- err
					return
				}
				if ok && v.Items[0].Item != fmt.Sprintf("rec-%s-%d", v.SessionID, v.Offset) {
					errs <- fmt.Errorf("torn session view %+v", v)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	last := int64(perWriter*writers - 1)
	for j := range sessions {
		id := fmt.Sprintf("c-%d", j)
		equalSession(t, mustSession(t, s, id), session(id, last))
	}
}

func testExpireSessions(t *testing.T, s store.Store) {
	now := ts
	old := session("old", 1)
	old.EventTime = now.Add(-72 * time.Hour)
	older := session("older", 2)
	older.EventTime = now.Add(-30 * 24 * time.Hour)
	fresh := session("fresh", 3)
	fresh.EventTime = now
	edge := session("edge", 4)
	edge.EventTime = now.Add(-24 * time.Hour) // exactly at the cutoff: kept
	if err := s.UpsertSessions(ctx(t), []store.SessionView{old, older, fresh, edge}); err != nil {
		t.Fatal(err)
	}
	n, err := s.ExpireSessions(ctx(t), now.Add(-24*time.Hour))
	if err != nil {
		t.Fatalf("ExpireSessions: %v", err)
	}
	if n >= 0 && n != 2 {
		t.Errorf("ExpireSessions removed %d, want 2", n)
	}
	for _, id := range []string{"old", "older"} {
		if _, ok, err := s.Session(ctx(t), id); err != nil || ok {
			t.Errorf("Session(%s) after expiry = %v, %v; want gone", id, ok, err)
		}
	}
	equalSession(t, mustSession(t, s, "fresh"), fresh)
	equalSession(t, mustSession(t, s, "edge"), edge)
	// An expired session can start again.
	if err := s.UpsertSession(ctx(t), old); err != nil {
		t.Fatal(err)
	}
	equalSession(t, mustSession(t, s, "old"), old)
}

// testExpireBoundary expires at a cutoff with sub-millisecond neighbours:
// sessions at or after the cutoff stay on every backend; a backend that
// counts what it removed (an exact one) removes the one a nanosecond before.
func testExpireBoundary(t *testing.T, s store.Store) {
	cutoff := ts
	before, at, after := session("before", 1), session("at", 2), session("after", 3)
	before.EventTime, at.EventTime, after.EventTime = cutoff.Add(-time.Nanosecond), cutoff, cutoff.Add(time.Nanosecond)
	if err := s.UpsertSessions(ctx(t), []store.SessionView{before, at, after}); err != nil {
		t.Fatal(err)
	}
	n, err := s.ExpireSessions(ctx(t), cutoff)
	if err != nil {
		t.Fatalf("ExpireSessions: %v", err)
	}
	equalSession(t, mustSession(t, s, "at"), at)
	equalSession(t, mustSession(t, s, "after"), after)
	if n < 0 {
		return // a coarse backend: it may keep "before"
	}
	if n != 1 {
		t.Errorf("ExpireSessions removed %d, want 1", n)
	}
	if _, ok, err := s.Session(ctx(t), "before"); err != nil || ok {
		t.Errorf("Session(before) after expiry = %v, %v; want gone", ok, err)
	}
}

func testClose(t *testing.T, s store.Store) {
	if err := s.PublishBatch(ctx(t), sampleBatch("b-1")); err != nil {
		t.Fatal(err)
	}
	if err := s.UpsertSession(ctx(t), session("s", 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	check := func(name string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	check("PublishBatch", s.PublishBatch(ctx(t), sampleBatch("b-2")))
	_, _, err := s.CurrentBatch(ctx(t))
	check("CurrentBatch", err)
	_, err = s.RetainedBatches(ctx(t))
	check("RetainedBatches", err)
	_, err = s.Similar(ctx(t), "item-1", 1)
	check("Similar", err)
	_, err = s.UserRecs(ctx(t), "user-1", 1)
	check("UserRecs", err)
	_, err = s.Popular(ctx(t), 1)
	check("Popular", err)
	check("UpsertSession", s.UpsertSession(ctx(t), session("s", 2)))
	check("UpsertSessions", s.UpsertSessions(ctx(t), []store.SessionView{session("s", 3)}))
	_, _, err = s.Session(ctx(t), "s")
	check("Session", err)
	_, err = s.ExpireSessions(ctx(t), ts)
	check("ExpireSessions", err)
}
