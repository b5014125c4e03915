package generate

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lambdarec/lambdarec/schemas"
)

// testStart is a fixed start so that output is reproducible; it is in the
// past so that every event time validates.
var testStart = time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)

func newGen(t testing.TB, cfg Config) *Generator {
	t.Helper()
	if cfg.Start.IsZero() {
		cfg.Start = testStart
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestSameSeedSameBytes(t *testing.T) {
	const n = 30_000
	cfg := Config{Seed: 42, DupRate: 0.02, LateRate: 0.02, MalformedRate: 0.01}
	a, b := newGen(t, cfg), newGen(t, cfg)
	for i := range n {
		ra, rb := a.Next(), b.Next()
		if !bytes.Equal(ra.Key, rb.Key) || !bytes.Equal(ra.Value, rb.Value) {
			t.Fatalf("record %d differs between two generators of seed 42", i)
		}
	}
	differs := func(name string, cfg2 Config) {
		t.Helper()
		a, b := newGen(t, cfg), newGen(t, cfg2)
		same := 0
		for range 1000 {
			// Malformed garbage depends on the seed only.
			if ra, rb := a.Next(), b.Next(); !ra.Malformed && bytes.Equal(ra.Value, rb.Value) {
				same++
			}
		}
		if same > 0 {
			t.Errorf("%s: %d of 1000 records are identical to seed 42's", name, same)
		}
	}
	cfg2 := cfg
	cfg2.Seed = 43
	differs("seed 43", cfg2)
	cfg3 := cfg
	cfg3.Start = testStart.Add(time.Hour)
	differs("another start", cfg3)
}

func TestEventsAreValidSessions(t *testing.T) {
	const n = 60_000
	g := newGen(t, Config{Seed: 7})
	now := time.Now()
	ids := make(map[string]bool, n)
	type sessState struct {
		user   string
		last   time.Time
		cart   map[string]int32
		orders map[string]bool
		bought bool
	}
	sessions := map[string]*sessState{}
	userSessions := map[string]int{}
	orders := map[string]string{} // order → session
	kinds := map[schemas.Kind]int{}
	for i := range n {
		rec := g.Next()
		if rec.Dup || rec.Late || rec.Malformed {
			t.Fatalf("record %d: fault injected with zero rates", i)
		}
		var ev schemas.UserInteraction
		if err := schemas.Decode(rec.Value, &ev, now); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if string(rec.Key) != ev.GetSessionId() {
			t.Fatalf("record %d: key %q, session %q", i, rec.Key, ev.GetSessionId())
		}
		if ids[ev.GetEventId()] {
			t.Fatalf("record %d: event id %s repeated", i, ev.GetEventId())
		}
		ids[ev.GetEventId()] = true
		if m := ev.GetMetadata(); m.GetSource() != "generator" || m.GetSchemaVersion() != 1 || !m.GetIsTest() {
			t.Fatalf("record %d: metadata %v", i, m)
		}
		if ev.GetDevice()["type"] == "" || ev.GetLocation()["country"] == "" {
			t.Fatalf("record %d: device %v location %v", i, ev.GetDevice(), ev.GetLocation())
		}
		if ev.EventTime().Before(testStart) {
			t.Fatalf("record %d: time %s before the start", i, ev.EventTime())
		}
		s := sessions[ev.GetSessionId()]
		if s == nil {
			s = &sessState{user: ev.GetUserId(), cart: map[string]int32{}, orders: map[string]bool{}}
			sessions[ev.GetSessionId()] = s
			userSessions[ev.GetUserId()]++
		}
		if s.user != ev.GetUserId() {
			t.Fatalf("session %s has users %s and %s", ev.GetSessionId(), s.user, ev.GetUserId())
		}
		if ev.EventTime().Before(s.last) {
			t.Fatalf("session %s goes back in time", ev.GetSessionId())
		}
		s.last = ev.EventTime()
		kinds[ev.Kind()]++
		item, _ := ev.Item()
		switch ev.Kind() {
		case schemas.KindAddToCart:
			if s.bought {
				t.Fatalf("session %s adds to cart after its checkout", ev.GetSessionId())
			}
			s.cart[item] += ev.GetAddToCart().GetQuantity()
		case schemas.KindPurchase:
			p := ev.GetPurchase()
			s.bought = true
			if s.cart[item] == 0 {
				t.Fatalf("session %s buys %s which is not in its cart", ev.GetSessionId(), item)
			}
			if p.GetPrice() <= 0 || p.GetQuantity() < 1 {
				t.Fatalf("purchase without price or quantity: %v", p)
			}
			if o, ok := orders[p.GetOrderId()]; ok && o != ev.GetSessionId() {
				t.Fatalf("order %s spans sessions %s and %s", p.GetOrderId(), o, ev.GetSessionId())
			}
			orders[p.GetOrderId()] = ev.GetSessionId()
			s.orders[p.GetOrderId()] = true
			if len(s.orders) > 1 {
				t.Fatalf("session %s has %d orders", ev.GetSessionId(), len(s.orders))
			}
		}
	}
	returning := 0
	for _, c := range userSessions {
		if c >= 3 {
			returning++
		}
	}
	t.Logf("%d events, %d sessions, %d users, %d with 3+ sessions, %d orders, kinds %v",
		n, len(sessions), len(userSessions), returning, len(orders), kinds)
	if returning < 200 {
		t.Errorf("only %d users came back for 3+ sessions", returning)
	}
	// The funnel narrows: view > click > cart > purchase, all present.
	if !(kinds[schemas.KindPageView] > kinds[schemas.KindProductClick] &&
		kinds[schemas.KindProductClick] > kinds[schemas.KindAddToCart] &&
		kinds[schemas.KindAddToCart] > kinds[schemas.KindPurchase] && kinds[schemas.KindPurchase] > 0) {
		t.Errorf("funnel does not narrow: %v", kinds)
	}
	if got := float64(kinds[schemas.KindProductClick]) / float64(kinds[schemas.KindPageView]); math.Abs(got-clickRate) > 0.02 {
		t.Errorf("click rate %.3f, want %.2f", got, clickRate)
	}
}

// The clean stream does not depend on the fault rates: dropping duplicates
// and malformed records, and restoring late times, gives it back.
func TestFaultRates(t *testing.T) {
	const n = 100_000
	cfg := Config{Seed: 3, DupRate: 0.05, LateRate: 0.04, MalformedRate: 0.02}
	g, clean := newGen(t, cfg), newGen(t, Config{Seed: 3})
	now := time.Now()
	seen := map[string][]byte{} // event id → value
	var dups, late, malformed int
	for i := range n {
		rec := g.Next()
		switch {
		case rec.Malformed:
			malformed++
			var ev schemas.UserInteraction
			err := schemas.Decode(rec.Value, &ev, now)
			if de := (*schemas.DecodeError)(nil); !errors.As(err, &de) {
				t.Fatalf("record %d: malformed value decodes (err %v)", i, err)
			}
			if len(rec.Key) == 0 || rec.Key[0] != 's' {
				t.Fatalf("record %d: malformed record key %q", i, rec.Key)
			}
			continue
		case rec.Dup:
			dups++
			orig, ok := seen[rec.Event.GetEventId()]
			if !ok || !bytes.Equal(orig, rec.Value) || string(rec.Key) != rec.Event.GetSessionId() {
				t.Fatalf("record %d: duplicate is not a byte copy of an earlier record", i)
			}
			continue
		}
		var ev schemas.UserInteraction
		if err := schemas.Decode(rec.Value, &ev, now); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		seen[ev.GetEventId()] = rec.Value
		want := clean.Next().Event
		if ev.GetEventId() != want.GetEventId() || ev.Kind() != want.Kind() {
			t.Fatalf("record %d: event %s, clean stream has %s", i, ev.GetEventId(), want.GetEventId())
		}
		d := want.EventTime().Sub(ev.EventTime())
		if rec.Late {
			late++
			if d < time.Minute || d > 3*time.Hour {
				t.Fatalf("record %d: late by %s", i, d)
			}
		} else if d != 0 {
			t.Fatalf("record %d: time moved by %s without being late", i, d)
		}
	}
	c := g.Counts()
	if c.Dups != int64(dups) || c.Late != int64(late) || c.Malformed != int64(malformed) || c.Records != n {
		t.Errorf("counts %+v, saw dups %d late %d malformed %d", c, dups, late, malformed)
	}
	within := func(name string, got int, rate float64, base int) {
		t.Helper()
		if want := rate * float64(base); math.Abs(float64(got)-want) > 0.1*want {
			t.Errorf("%s: %d, want about %.0f", name, got, want)
		}
	}
	within("dups", dups, cfg.DupRate, n)
	within("malformed", malformed, cfg.MalformedRate, n)
	within("late", late, cfg.LateRate, n-dups-malformed)
}

func TestClockRate(t *testing.T) {
	for _, rate := range []float64{100, 2000} {
		g := newGen(t, Config{Seed: 1, ClockRate: rate})
		const n = 200_000
		var first, last time.Time
		for i := range n {
			ev := g.Next().Event
			if i == 20_000 { // past the warm-up
				first = ev.EventTime()
			}
			last = ev.EventTime()
		}
		got := float64(n-20_000) / last.Sub(first).Seconds()
		t.Logf("clock rate %g: %.1f events per event-time second", rate, got)
		if math.Abs(got-rate) > 0.2*rate {
			t.Errorf("clock rate %g: got %.1f events per second of event time", rate, got)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	f := func(name string, cfg Config, want string) {
		t.Helper()
		if cfg.Start.IsZero() {
			cfg.Start = testStart
		}
		_, err := New(cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, want)
		}
	}
	f("dup rate", Config{DupRate: 1.5}, "dup rate")
	f("nan late rate", Config{LateRate: math.NaN()}, "late rate")
	f("negative malformed", Config{MalformedRate: -0.1}, "malformed rate")
	f("faults", Config{DupRate: 0.5, MalformedRate: 0.5}, "at most 0.9")
	f("categories", Config{NumItems: 10, NumCategories: 20}, "per category")
	f("users", Config{NumUsers: -1}, "users")
	f("successors", Config{NumItems: 3, NumCategories: 1, Successors: 3}, "successors")
	f("start", Config{Start: time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)}, "too early")
	f("rate", Config{Rate: -1}, "rate")
	f("count", Config{Count: -1}, "negative")
	f("clock", Config{ClockRate: math.Inf(1)}, "clock rate")
}

func TestTinyCatalog(t *testing.T) {
	g := newGen(t, Config{Seed: 5, NumItems: 3, NumCategories: 2, NumUsers: 1, Successors: 2})
	now := time.Now()
	for i := range 2000 {
		var ev schemas.UserInteraction
		if err := schemas.Decode(g.Next().Value, &ev, now); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
}

func ExampleGenerator_Next() {
	g, err := New(Config{Seed: 1, Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), NumUsers: 100})
	if err != nil {
		panic(err)
	}
	ev := g.Next().Event
	item, cat := ev.Item()
	fmt.Println(ev.GetUserId() != "", ev.GetSessionId() != "", ev.Kind(), item != "", cat != "")
	// Output: true true page_view true true
}

// The hand-written encoding is exactly what protobuf's deterministic
// marshalling writes for the record's event.
func TestValueIsEventEncoding(t *testing.T) {
	g := newGen(t, Config{Seed: 9, LateRate: 0.1})
	det := proto.MarshalOptions{Deterministic: true}
	kinds := map[schemas.Kind]bool{}
	for i := range 20_000 {
		rec := g.Next()
		want, err := det.Marshal(rec.Event)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rec.Value, want) {
			t.Fatalf("record %d (%s): value differs from proto.Marshal of its event", i, rec.Event.Kind())
		}
		kinds[rec.Event.Kind()] = true
	}
	if len(kinds) != 4 {
		t.Errorf("only kinds %v seen", kinds)
	}
}
