package main

import (
	"encoding/json"
	"strings"
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

// A speed answer records how it was scored (as_of.speed.scored), that of the
// first answer with a speed item, and the summary line counts them.
func TestProbeStateScored(t *testing.T) {
	const (
		emptyView = `{"items":[{"item":"a","source":"popular"}],"as_of":{"batch":{"batch_id":"b1"},"speed":{"partition":5,"offset":43,"scored":"read"}}}`
		view      = `{"items":[{"item":"c","source":"speed"}],"as_of":{"batch":{"batch_id":"b1"},"speed":{"partition":5,"offset":43,"scored":"view"}}}`
		read      = `{"items":[{"item":"c","source":"speed"}],"as_of":{"batch":{"batch_id":"b1"},"speed":{"partition":5,"offset":43,"scored":"read"}}}`
		old       = `{"items":[{"item":"c","source":"speed"}],"as_of":{"batch":{"batch_id":"b1"},"speed":{"partition":5,"offset":43}}}`
	)
	for _, c := range []struct {
		answers []string
		want    string
	}{
		{[]string{read}, "read"},
		{[]string{emptyView, view, read}, "view"},
		{[]string{old}, ""},
	} {
		p := probeState{batchAtPost: "b1"}
		got := false
		for _, s := range c.answers {
			got = p.see(decode(t, s))
		}
		if !got || p.scored != c.want {
			t.Errorf("answers %v: speed answer %v, scored %q, want %q", c.answers, got, p.scored, c.want)
		}
	}
	line := scoredLine(map[string]int{"read": 7, "view": 2, "": 1})
	if line != "speed answers scored at read 7, from the stored view 2, not saying 1" {
		t.Fatalf("summary %q", line)
	}
}

func TestSummarizeLoopTrace(t *testing.T) {
	trace := `# S pollStart polled processed done recs flushes views scoreMs awaitMs rescored lag gc commit
S 1000 1010 1030 1040 100 1 50 5 1 10 2000 3 false
S 1040 1040 1070 1100 200 1 70 8 0 20 1500 3 true
S 1100 1150 1150 1160 0 0 0 0 0 0 0 4 false
S 2000 2000 2010 2020 10 0 0 0 0 0 0 4 false
S 1200 1200 12`
	s, err := summarizeLoopTrace(strings.NewReader(trace), 1000, 1500)
	if err != nil {
		t.Fatal(err)
	}
	want := loopSummary{iters: 3, empty: 1, recs: 300, views: 120, rescored: 30, wall: 160,
		pollWait: 60, process: 50, after: 50, score: 13, await: 1, maxLag: 2000}
	if s != want {
		t.Fatalf("summary %+v, want %+v", s, want)
	}
	if got := s.String(); !strings.Contains(got, "1875 records/s") || !strings.Contains(got, "37.5% waiting in poll") {
		t.Fatalf("summary text %q", got)
	}
	if _, err := summarizeLoopTrace(strings.NewReader("S 1 2 3\n"), 0, 0); err == nil {
		t.Fatal("a short line was accepted")
	}
	if _, err := summarizeLoopTrace(strings.NewReader("S 1 2 3 4 x 0 0 0 0 0 0 0 false\n"), 0, 0); err == nil {
		t.Fatal("a line with a bad number was accepted")
	}
}
