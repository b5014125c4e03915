package speed

import (
	"log/slog"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/schemas"
)

// FuzzRecord feeds arbitrary record values (after a few valid ones) through
// the processor and scores the views: bad input never panics, and an invalid
// record leaves no session behind.
func FuzzRecord(f *testing.F) {
	f.Add(value("e1", "s1", "i1", t0, false), int64(0))
	f.Add(value("e2", "s1", "i2", t0.Add(time.Hour), true), int64(1000))
	f.Add([]byte{0x0a, 0x00, 0x12}, int64(-5))
	f.Add([]byte("not a protobuf"), int64(1<<40))
	f.Fuzz(func(t *testing.T, b []byte, tsMs int64) {
		p, err := newProcessor(defaultLimits(), model.DefaultParams(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		p.assign(0)
		for i, item := range []string{"i1", "i2", "i3"} {
			if _, err := p.record(0, int64(i), t0, value("seed"+item, "s1", item, t0, false)); err != nil {
				t.Fatal(err)
			}
		}
		s, err := p.record(0, 3, time.UnixMilli(tsMs), b)
		if err != nil && s != nil {
			t.Fatalf("invalid record returned a session: %v", err)
		}
		if err != nil && p.c.invalid != 1 {
			t.Fatalf("invalid not counted: %+v", p.c)
		}
		for _, v := range p.appendViews(nil, t0) {
			if v.SessionID == "" || v.Offset < 0 {
				t.Fatalf("bad view %+v", v)
			}
		}
		if _, err := p.copyDeltas(); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzDecodeFast holds decodeFast to schemas.Decode: whenever it accepts a
// value, schemas.Decode accepts it too (with the same clock) and
// model.EventFromProto yields the same fields. The seeds are generated
// records, malformed ones and hand-made variants of the contract's shape.
func FuzzDecodeFast(f *testing.F) {
	g, err := generate.New(generate.Config{Seed: 3, Start: t0, MalformedRate: 0.2})
	if err != nil {
		f.Fatal(err)
	}
	for range 64 {
		f.Add(g.Next().Value, t0.UnixMilli())
	}
	f.Add(value("e1", "s1", "i1", t0, false), t0.UnixMilli())
	f.Add(value("e2", "s1", "i2", t0.Add(2*time.Hour), true), t0.UnixMilli())
	f.Add([]byte{0x0a, 0x00, 0x12}, int64(-5))
	f.Fuzz(func(t *testing.T, b []byte, tsMs int64) {
		clock := time.UnixMilli(tsMs)
		var w wireEvent
		if !decodeFast(b, clock, &w) {
			return
		}
		var ev schemas.UserInteraction
		if err := schemas.Decode(b, &ev, clock); err != nil {
			t.Fatalf("decodeFast accepted what schemas.Decode rejects: %v", err)
		}
		want := model.EventFromProto(&ev, 0, 0)
		got := model.Event{EventID: string(w.eventID), SessionID: string(w.sessionID), UserID: string(w.userID),
			ItemID: string(w.itemID), Kind: w.kind, Time: w.time}
		if got != want {
			t.Fatalf("decodeFast read %+v, schemas.Decode %+v", got, want)
		}
	})
}

// TestDecodeFastTakesGeneratedRecords checks that the fast path takes every
// valid record the generator writes (the producers' shape) and agrees with
// schemas.Decode on each, and that it leaves every malformed one to it.
func TestDecodeFastTakesGeneratedRecords(t *testing.T) {
	g, err := generate.New(generate.Config{Seed: 5, Start: t0, MalformedRate: 0.05})
	if err != nil {
		t.Fatal(err)
	}
	var fast, slow, bad int
	var ev schemas.UserInteraction
	for range 20_000 {
		r := g.Next()
		var w wireEvent
		ok := decodeFast(r.Value, t0.Add(time.Hour), &w)
		err := schemas.Decode(r.Value, &ev, t0.Add(time.Hour))
		switch {
		case err != nil && ok:
			t.Fatalf("decodeFast accepted a record schemas.Decode rejects: %v", err)
		case err != nil:
			bad++
		case !ok:
			slow++
		default:
			fast++
			want := model.EventFromProto(&ev, 0, 0)
			if got := (model.Event{EventID: string(w.eventID), SessionID: string(w.sessionID), UserID: string(w.userID),
				ItemID: string(w.itemID), Kind: w.kind, Time: w.time}); got != want {
				t.Fatalf("decodeFast read %+v, schemas.Decode %+v", got, want)
			}
		}
	}
	if slow != 0 || fast == 0 || bad == 0 {
		t.Fatalf("fast %d, valid left to schemas.Decode %d, invalid %d: want every valid record fast", fast, slow, bad)
	}
	t.Logf("fast %d, invalid %d", fast, bad)
}

// TestDecodeFastShapes checks the shapes decodeFast leaves to schemas.Decode
// and a few it takes.
func TestDecodeFastShapes(t *testing.T) {
	base := &schemas.UserInteraction{
		EventId: "e1", UserId: "u1", SessionId: "s1", Timestamp: timestamppb.New(t0),
		Interaction: &schemas.UserInteraction_Purchase{Purchase: &schemas.Purchase{ItemId: "i1", Category: "c", Price: 2.5, Quantity: 2, OrderId: "o1"}},
		Device:      map[string]string{"os": "ios", "type": "mobile"},
		Location:    map[string]string{"country": "DE"},
		Metadata:    &schemas.Metadata{Source: "web", SchemaVersion: 1, IsTest: true},
	}
	enc := func(ev *schemas.UserInteraction) []byte {
		b, err := schemas.Encode(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	f := func(name string, b []byte, wantFast bool) {
		t.Helper()
		var w wireEvent
		ok := decodeFast(b, t0, &w)
		var ev schemas.UserInteraction
		err := schemas.Decode(b, &ev, t0)
		if ok != wantFast {
			t.Errorf("%s: fast %v, want %v (schemas.Decode: %v)", name, ok, wantFast, err)
		}
		if ok && err != nil {
			t.Errorf("%s: fast accepted, schemas.Decode: %v", name, err)
		}
	}
	f("full purchase", enc(base), true)
	many := proto.Clone(base).(*schemas.UserInteraction)
	many.Device = map[string]string{}
	for i := range schemas.MaxMapEntries + 1 {
		many.Device[strconv.Itoa(i)] = "x"
	}
	f("too many device entries", enc(many), false)
	noQty := proto.Clone(base).(*schemas.UserInteraction)
	noQty.GetPurchase().Quantity = 0
	f("purchase without quantity", enc(noQty), false)
	future := proto.Clone(base).(*schemas.UserInteraction)
	future.Timestamp = timestamppb.New(t0.Add(schemas.MaxFutureSkew + time.Second))
	f("an hour and a second ahead", enc(future), false)
	edge := proto.Clone(base).(*schemas.UserInteraction)
	edge.Timestamp = timestamppb.New(t0.Add(schemas.MaxFutureSkew))
	f("exactly an hour ahead", enc(edge), true)
	f("repeated event id", append(enc(base), 0x0a, 0x02, 'e', '2'), false)
	f("unknown field", append(enc(base), 0x78, 0x01), false)
	f("second interaction", append(enc(base), 0x52, 0x04, 0x0a, 0x02, 'i', '2'), false)
	f("location value not UTF-8", append(enc(base), 0xaa, 0x01, 0x05, 0x0a, 0x01, 'c', 0x12, 0x01, 0xff), false)
	f("empty value", nil, false)
}
