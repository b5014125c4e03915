package schemas

import (
	"testing"

	"google.golang.org/protobuf/proto"
)

// FuzzEventsRoundTrip feeds arbitrary bytes to the decoder; every event it
// accepts must come back from an Arrow row of the events table equal, up to
// the microsecond precision of timestamptz.
func FuzzEventsRoundTrip(f *testing.F) {
	for k := KindPageView; k <= KindPurchase; k++ {
		b, _ := Encode(nil, validEvent(k))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev UserInteraction
		if err := Decode(b, &ev, testNow); err != nil {
			return
		}
		want := proto.Clone(&ev).(*UserInteraction)
		if ts := want.GetTimestamp(); ts != nil {
			ts.Nanos -= ts.Nanos % 1000
		}
		// Unknown fields have no column.
		want.ProtoReflect().SetUnknown(nil)
		if m := want.GetMetadata(); m != nil {
			m.ProtoReflect().SetUnknown(nil)
		}
		clearUnknownInteraction(want)
		got := roundTripOne(t, &ev)
		if !proto.Equal(got, want) {
			t.Fatalf("round trip\n got %v\nwant %v", got, want)
		}
	})
}

func clearUnknownInteraction(ev *UserInteraction) {
	switch i := ev.GetInteraction().(type) {
	case *UserInteraction_PageView:
		i.PageView.ProtoReflect().SetUnknown(nil)
	case *UserInteraction_ProductClick:
		i.ProductClick.ProtoReflect().SetUnknown(nil)
	case *UserInteraction_AddToCart:
		i.AddToCart.ProtoReflect().SetUnknown(nil)
	case *UserInteraction_Purchase:
		i.Purchase.ProtoReflect().SetUnknown(nil)
	}
	if ts := ev.GetTimestamp(); ts != nil {
		ts.ProtoReflect().SetUnknown(nil)
	}
}
