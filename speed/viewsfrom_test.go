package speed

import (
	"testing"
	"time"
)

// A commit's metadata carries the views' position and, while the member's
// bounds bite, its shed stamp: each reads back alone, and the position
// parses the same with or without the stamp.
func TestShedStampInCommitMetadata(t *testing.T) {
	at := time.UnixMilli(1_780_000_000_123).UTC()
	plain := viewsMeta(4711)
	stamped := plain + shedMeta(42, at)
	if got := parseViewsMeta(stamped); got != 4711 {
		t.Errorf("views position of %q = %d, want 4711", stamped, got)
	}
	if n, got, ok := ShedFromCommit(stamped); !ok || n != 42 || !got.Equal(at) {
		t.Errorf("ShedFromCommit(%q) = %d, %s, %v", stamped, n, got, ok)
	}
	for _, meta := range []string{plain, "", "other tool shed=3@5", plain + " shed=x@5", plain + " shed=3@", plain + " shed=3@-1"} {
		if _, _, ok := ShedFromCommit(meta); ok {
			t.Errorf("ShedFromCommit(%q) found a stamp", meta)
		}
	}
}
