package serving

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// stdJSON is what WriteJSON writes for v.
func stdJSON(t testing.TB, v any) []byte {
	t.Helper()
	w := httptest.NewRecorder()
	WriteJSON(w, 200, v)
	return w.Body.Bytes()
}

func encoded[T any](v *T, enc func([]byte, *T) []byte) []byte {
	w := httptest.NewRecorder()
	writeEncoded(w, v, enc)
	return w.Body.Bytes()
}

// The hand encoders write exactly encoding/json's bytes.
func TestEncodersMatchEncodingJSON(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.FixedZone("x", 3600))
	strs := []string{"", "plain", `quo"te\back`, "ctl\x00\x01\b\f\n\r\t\x1f\x7f", "<html>&amp;", "\xff\xfe bad", "é ✓ 😀", "\u2028\u2029", "a\xc3"}
	floats := []float64{0, -0.0, 1, -1, 0.1, 1e-7, 1e-6, 123456789.125, 1e20, 1e21, 1.5e300, -2.5e-10, math.SmallestNonzeroFloat64, math.MaxFloat64}
	var items []Item
	var scored []store.Scored
	for i, s := range strs {
		items = append(items, Item{Item: s, Score: floats[i%len(floats)], Source: SourceBatch, Scale: ScaleCovisitation})
		scored = append(scored, store.Scored{Item: s, Score: floats[(i+3)%len(floats)]})
	}
	for _, f := range floats {
		items = append(items, Item{Item: "f", Score: f, Source: SourcePopular, Scale: ScalePopularity})
	}
	batch := &BatchAsOf{BatchID: "b\"1", Boundary: map[int32]int64{0: 5, 10: -1, 2: 1 << 62, -3: 0, 1: 7}, CreatedAt: at, SourceMaxEventTime: time.Time{}, StalenessSeconds: 12.5}
	speed := &SpeedAsOf{EventTime: at.UTC(), Partition: -1, Offset: math.MaxInt64, StalenessSeconds: 0}
	for _, r := range []Recommendations{
		{},
		{UserID: "u", SessionID: "s\n", K: 10, Items: []Item{}},
		{SessionID: "s", K: 10, Items: []Item{}},
		{UserID: "u", K: 10, Items: []Item{}},
		{UserID: strs[3], SessionID: strs[5], K: 100, Items: items, AsOf: AsOf{Batch: batch, Speed: speed}},
		{K: 1, Items: items[:1], AsOf: AsOf{Batch: &BatchAsOf{BatchID: "x"}}},
		{K: 1, Items: items[:1], AsOf: AsOf{Batch: &BatchAsOf{BatchID: "x", Boundary: map[int32]int64{}}}},
	} {
		if got, want := encoded(&r, appendRecommendations), stdJSON(t, &r); !bytes.Equal(got, want) {
			t.Errorf("recommendations\n got %s\nwant %s", got, want)
		}
	}
	for _, s := range []Similar{
		{},
		{ItemID: "i", K: 5, Items: []store.Scored{}, AsOf: AsOf{Batch: batch}},
		{ItemID: strs[2], K: 5, Items: scored, AsOf: AsOf{Batch: batch, Speed: speed}},
	} {
		if got, want := encoded(&s, appendSimilar), stdJSON(t, &s); !bytes.Equal(got, want) {
			t.Errorf("similar\n got %s\nwant %s", got, want)
		}
	}
	// NaN cannot be written by encoding/json; the encoder writes null.
	r := Recommendations{Items: []Item{{Item: "n", Score: math.NaN()}}}
	if got := encoded(&r, appendRecommendations); !bytes.Contains(got, []byte(`"score":null`)) || !json.Valid(got) {
		t.Errorf("NaN score: %s", got)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a", "\x00", "\"\\", "\xff", "\u2028", "😀", "<>&"} {
		f.Add(s, 1.5)
	}
	f.Fuzz(func(t *testing.T, s string, score float64) {
		if math.IsNaN(score) || math.IsInf(score, 0) {
			score = 0
		}
		r := Recommendations{UserID: s, SessionID: s, K: 1, Items: []Item{{Item: s, Score: score, Source: s}}}
		if got, want := encoded(&r, appendRecommendations), stdJSON(t, &r); !bytes.Equal(got, want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
}

func BenchmarkAppendRecommendations(b *testing.B) {
	r := &Recommendations{UserID: "user-4711", SessionID: "session-4711", K: 20,
		AsOf: AsOf{Batch: &BatchAsOf{BatchID: "bench", Boundary: map[int32]int64{0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6}, CreatedAt: time.Now(), SourceMaxEventTime: time.Now(), StalenessSeconds: 60.25},
			Speed: &SpeedAsOf{EventTime: time.Now(), Partition: 3, Offset: 123456, StalenessSeconds: 1.5}}}
	for i := range 20 {
		r.Items = append(r.Items, Item{Item: "item-" + string(rune('a'+i)), Score: 20.123456 - float64(i), Source: SourceBatch})
	}
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 4096)
		for b.Loop() {
			buf = appendRecommendations(buf[:0], r)
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		for b.Loop() {
			buf.Reset()
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			_ = enc.Encode(r)
		}
	})
}
