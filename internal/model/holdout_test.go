package model

import (
	"fmt"
	"testing"
)

// Ids that differ only in their last digits, as the generator's are, are
// split in the asked proportion (the unmixed hash put all 4,545 sessions of
// a generated stream on the train side).
func TestHoldOutSplitsSimilarIDs(t *testing.T) {
	var events []Event
	const n = 4545
	for i := range n {
		events = append(events, Event{SessionID: fmt.Sprintf("s12ows1e-%d", i)})
	}
	for _, frac := range []float64{0.1, 0.2, 0.5} {
		_, test := HoldOut(events, frac)
		if got := float64(len(test)) / n; got < frac-0.05 || got > frac+0.05 {
			t.Errorf("holdout %.1f: %d of %d sessions in test (%.3f)", frac, len(test), n, got)
		}
	}
}
