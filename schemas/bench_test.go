package schemas

import "testing"

// BenchmarkDecodeValidate is the per-record cost every consumer pays: protobuf
// decode into a reused message plus validation.
func BenchmarkDecodeValidate(b *testing.B) {
	raw, err := Encode(nil, validEvent(KindAddToCart))
	if err != nil {
		b.Fatal(err)
	}
	var ev UserInteraction
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := Decode(raw, &ev, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalJSONValidate(b *testing.B) {
	raw, err := MarshalJSON(validEvent(KindAddToCart))
	if err != nil {
		b.Fatal(err)
	}
	var ev UserInteraction
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := UnmarshalJSON(raw, &ev); err != nil {
			b.Fatal(err)
		}
		if err := Validate(&ev, testNow); err != nil {
			b.Fatal(err)
		}
	}
}
