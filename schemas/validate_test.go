package schemas

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// validEvent returns a fully populated valid event of the given kind.
func validEvent(k Kind) *UserInteraction {
	ev := &UserInteraction{
		EventId:   "e-1",
		Timestamp: timestamppb.New(testNow.Add(-time.Minute)),
		UserId:    "u-1",
		SessionId: "s-1",
		Device:    map[string]string{"type": "mobile"},
		Location:  map[string]string{"country": "DE"},
		Metadata:  &Metadata{Source: "test", SchemaVersion: SchemaVersion, CorrelationId: "c-1", IsTest: true},
	}
	switch k {
	case KindPageView:
		ev.Interaction = &UserInteraction_PageView{PageView: &PageView{ItemId: "i-1", Category: "c"}}
	case KindProductClick:
		ev.Interaction = &UserInteraction_ProductClick{ProductClick: &ProductClick{ItemId: "i-1", Category: "c"}}
	case KindAddToCart:
		ev.Interaction = &UserInteraction_AddToCart{AddToCart: &AddToCart{ItemId: "i-1", Category: "c", Price: 9.99, Quantity: 2}}
	case KindPurchase:
		ev.Interaction = &UserInteraction_Purchase{Purchase: &Purchase{ItemId: "i-1", Category: "c", Price: 9.99, Quantity: 1, OrderId: "o-1"}}
	}
	return ev
}

func TestValidateAcceptsEveryKind(t *testing.T) {
	for k := KindPageView; k <= KindPurchase; k++ {
		ev := validEvent(k)
		if err := Validate(ev, testNow); err != nil {
			t.Errorf("%s: %v", k, err)
		}
		if got := ev.Kind(); got != k {
			t.Errorf("Kind() = %s, want %s", got, k)
		}
		if item, cat := ev.Item(); item != "i-1" || cat != "c" {
			t.Errorf("%s: Item() = %q, %q", k, item, cat)
		}
	}
}

func TestValidateNamesTheField(t *testing.T) {
	f := func(field string, mutate func(ev *UserInteraction), k Kind) {
		t.Helper()
		ev := validEvent(k)
		mutate(ev)
		err := Validate(ev, testNow)
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Fatalf("want a FieldError for %s, got %v", field, err)
		}
		if fe.Field != field {
			t.Fatalf("error names %q, want %q (%v)", fe.Field, field, err)
		}
	}
	long := strings.Repeat("x", MaxIDLen+1)
	f("event_id", func(ev *UserInteraction) { ev.EventId = "" }, KindPageView)
	f("event_id", func(ev *UserInteraction) { ev.EventId = long }, KindPageView)
	f("event_id", func(ev *UserInteraction) { ev.EventId = "\xff" }, KindPageView)
	f("timestamp", func(ev *UserInteraction) { ev.Timestamp = nil }, KindPageView)
	f("timestamp", func(ev *UserInteraction) { ev.Timestamp = timestamppb.New(testNow.Add(2 * MaxFutureSkew)) }, KindPageView)
	f("timestamp", func(ev *UserInteraction) { ev.Timestamp = timestamppb.New(time.Unix(0, 0)) }, KindPageView)
	f("timestamp", func(ev *UserInteraction) { ev.Timestamp = &timestamppb.Timestamp{Seconds: 1e15} }, KindPageView)
	f("user_id", func(ev *UserInteraction) { ev.UserId = "" }, KindPageView)
	f("session_id", func(ev *UserInteraction) { ev.SessionId = long }, KindPageView)
	f("interaction", func(ev *UserInteraction) { ev.Interaction = nil }, KindPageView)
	f("page_view", func(ev *UserInteraction) { ev.Interaction = &UserInteraction_PageView{} }, KindPageView)
	f("page_view.item_id", func(ev *UserInteraction) { ev.GetPageView().ItemId = "" }, KindPageView)
	f("product_click.category", func(ev *UserInteraction) { ev.GetProductClick().Category = strings.Repeat("c", MaxCategoryLen+1) }, KindProductClick)
	f("add_to_cart.quantity", func(ev *UserInteraction) { ev.GetAddToCart().Quantity = 0 }, KindAddToCart)
	f("add_to_cart.price", func(ev *UserInteraction) { ev.GetAddToCart().Price = math.NaN() }, KindAddToCart)
	f("add_to_cart.price", func(ev *UserInteraction) { ev.GetAddToCart().Price = -1 }, KindAddToCart)
	f("purchase.order_id", func(ev *UserInteraction) { ev.GetPurchase().OrderId = "" }, KindPurchase)
	f("purchase.quantity", func(ev *UserInteraction) { ev.GetPurchase().Quantity = MaxQuantity + 1 }, KindPurchase)
	f("device", func(ev *UserInteraction) { ev.Device[""] = "x" }, KindPageView)
	f("location.city", func(ev *UserInteraction) { ev.Location["city"] = strings.Repeat("v", MaxMapValueLen+1) }, KindPageView)
	f("metadata.schema_version", func(ev *UserInteraction) { ev.Metadata.SchemaVersion = SchemaVersion + 1 }, KindPageView)
	f("metadata.correlation_id", func(ev *UserInteraction) { ev.Metadata.CorrelationId = long }, KindPageView)
}

func TestValidateToleratesLateEventsAndClockSkew(t *testing.T) {
	ev := validEvent(KindPageView)
	ev.Timestamp = timestamppb.New(testNow.Add(-30 * 24 * time.Hour))
	if err := Validate(ev, testNow); err != nil {
		t.Fatalf("a month-old event is late, not invalid: %v", err)
	}
	ev.Timestamp = timestamppb.New(testNow.Add(MaxFutureSkew / 2))
	if err := Validate(ev, testNow); err != nil {
		t.Fatalf("clock skew within %s must pass: %v", MaxFutureSkew, err)
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	for k := KindPageView; k <= KindPurchase; k++ {
		in := validEvent(k)
		b, err := Encode(nil, in)
		if err != nil {
			t.Fatal(err)
		}
		var out UserInteraction
		if err := Decode(b, &out, testNow); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if !proto.Equal(in, &out) {
			t.Fatalf("%s: round trip changed the event", k)
		}
		j, err := MarshalJSON(in)
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON UserInteraction
		if err := UnmarshalJSON(j, &fromJSON); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if !proto.Equal(in, &fromJSON) {
			t.Fatalf("%s: JSON round trip changed the event: %s", k, j)
		}
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	var ev UserInteraction
	err := Decode([]byte{0xff, 0xff, 0xff}, &ev, testNow)
	var de *DecodeError
	if !errors.As(err, &de) || de.Format != "protobuf" {
		t.Fatalf("want a protobuf DecodeError, got %v", err)
	}
	err = UnmarshalJSON([]byte(`{"event_id": 5}`), &ev)
	if !errors.As(err, &de) || de.Format != "json" {
		t.Fatalf("want a json DecodeError, got %v", err)
	}
	// Valid protobuf that is not a valid event is a FieldError, not a DecodeError.
	err = Decode(nil, &ev, testNow)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "event_id" {
		t.Fatalf("empty message: want FieldError on event_id, got %v", err)
	}
}

func TestKindNames(t *testing.T) {
	for k := KindPageView; k <= KindPurchase; k++ {
		got, ok := ParseKind(k.String())
		if !ok || got != k {
			t.Errorf("ParseKind(%q) = %v, %v", k.String(), got, ok)
		}
	}
	if _, ok := ParseKind("unknown"); ok {
		t.Error("ParseKind(unknown) must fail")
	}
}
