package schemas

import (
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the protobuf decoder and validator: it
// must never panic, and whatever it accepts must survive a re-encode and
// validate again.
func FuzzDecode(f *testing.F) {
	for k := KindPageView; k <= KindPurchase; k++ {
		b, _ := Encode(nil, validEvent(k))
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev UserInteraction
		if err := Decode(b, &ev, testNow); err != nil {
			if err.Error() == "" {
				t.Fatal("error without a message")
			}
			return
		}
		again, err := Encode(nil, &ev)
		if err != nil {
			t.Fatalf("re-encode accepted event: %v", err)
		}
		var ev2 UserInteraction
		if err := Decode(again, &ev2, testNow); err != nil {
			t.Fatalf("re-encoded accepted event no longer valid: %v", err)
		}
	})
}

// FuzzUnmarshalJSON does the same for the JSON mapping used by the collector.
func FuzzUnmarshalJSON(f *testing.F) {
	for k := KindPageView; k <= KindPurchase; k++ {
		b, _ := MarshalJSON(validEvent(k))
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"event_id":"e","timestamp":"2026-11-25T11:00:00Z","page_view":{}}`))
	f.Add([]byte(`[1,2,3]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev UserInteraction
		if err := UnmarshalJSON(b, &ev); err != nil {
			return
		}
		if err := Validate(&ev, testNow); err != nil {
			return
		}
		out, err := MarshalJSON(&ev)
		if err != nil {
			t.Fatalf("marshal accepted event: %v", err)
		}
		var ev2 UserInteraction
		if err := UnmarshalJSON(out, &ev2); err != nil {
			t.Fatalf("re-parse accepted event: %v (%s)", err, out)
		}
		if err := Validate(&ev2, testNow); err != nil {
			t.Fatalf("re-parsed accepted event no longer valid: %v", err)
		}
	})
}
