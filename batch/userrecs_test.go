package batch

import "testing"

// TestAppendInputsEqualsEncodeInputs: the inputs column written without an
// encoder holds encodeInputs' bytes, for plain items and for items JSON
// escapes.
func TestAppendInputsEqualsEncodeInputs(t *testing.T) {
	for _, items := range [][]string{
		nil,
		{"item-1"},
		{"item-1", "item-22", "a b~c"},
		{"quote\"d", "item-2"},
		{"item-1", `back\slash`},
		{"<b>", "a&b"},
		{"tab\there", "del\x7f"},
		{"é", "日本"},
		{"bad\xffutf8"},
	} {
		want := encodeInputs(items)
		if got := string(appendInputs([]byte("x"), items)); got != "x"+want {
			t.Errorf("appendInputs(%q) = %q, encodeInputs %q", items, got, "x"+want)
		}
	}
}
