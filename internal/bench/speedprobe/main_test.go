package main

import (
	"encoding/json"
	"testing"
)

func decode(t *testing.T, s string) *answer {
	t.Helper()
	var a answer
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		t.Fatal(err)
	}
	return &a
}

// A probe without a speed item is counted as a miss, and the miss says what
// came instead: a speed view without items (the clicked item had no
// neighbours), an answer of a batch published meanwhile, or nothing.
func TestProbeStateClassifiesMisses(t *testing.T) {
	const (
		popular   = `{"items":[{"item":"a","source":"popular"}],"as_of":{"batch":{"batch_id":"b1"},"speed":null}}`
		emptyView = `{"items":[{"item":"a","source":"popular"}],"as_of":{"batch":{"batch_id":"b1"},"speed":{"partition":5,"offset":43}}}`
		newBatch  = `{"items":[{"item":"a","source":"popular"}],"as_of":{"batch":{"batch_id":"b2"},"speed":null}}`
		speed     = `{"items":[{"item":"c","source":"speed"}],"as_of":{"batch":{"batch_id":"b1"},"speed":{"partition":5,"offset":43}}}`
	)
	for _, c := range []struct {
		name    string
		answers []string
		want    miss
	}{
		{"speed view without items, then a batch covers it", []string{emptyView, newBatch}, missEmptySpeedView},
		{"a newer batch, no speed view", []string{popular, newBatch}, missBatchCovered},
		{"nothing", []string{popular, popular}, missNoView},
	} {
		p := probeState{batchAtPost: "b1"}
		for _, s := range c.answers {
			if p.see(decode(t, s)) {
				t.Fatalf("%s: %s counted as a speed answer", c.name, s)
			}
		}
		if got := p.miss(); got != c.want {
			t.Errorf("%s: miss %d, want %d", c.name, got, c.want)
		}
	}
	p := probeState{batchAtPost: "b1"}
	if !p.see(decode(t, speed)) {
		t.Error("an answer with a speed item is not a speed answer")
	}
}
