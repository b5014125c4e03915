package speed

import (
	"bytes"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// TestWriteLoopTrace: a layer started after WriteLoopTrace writes one line
// per loop iteration, whose records add up to what it consumed and whose
// times are in order.
func TestWriteLoopTrace(t *testing.T) {
	tt := newTestTopic(t, 2)
	g := newStreamGen(rand.New(rand.NewPCG(5, 17)), time.Now().Add(-time.Hour))
	const n = 600
	tt.produce(g.batch(n))
	ends := tt.endOffsets()

	var buf bytes.Buffer
	stopTrace := WriteLoopTrace(&buf)
	t.Cleanup(func() { loopTraceHook = nil })
	l, stop := startStoppable(t, tt, nil, store.NewMemory(), nil)
	waitFor(t, 30*time.Second, "the layer to consume the topic", func() bool { return caughtUp(l.Positions(), ends) })
	stop()
	if err := stopTrace(); err != nil {
		t.Fatal(err)
	}

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if lines[0] != LoopTraceHeader {
		t.Fatalf("first line %q, want the header", lines[0])
	}
	if len(lines) < 2 {
		t.Fatal("no loop iteration traced")
	}
	recs := 0
	for _, ln := range lines[1:] {
		f := strings.Fields(ln)
		if len(f) != 14 || f[0] != "S" {
			t.Fatalf("line %q: want 14 fields starting with S", ln)
		}
		var ts [4]float64
		for i := range ts {
			v, err := strconv.ParseFloat(f[1+i], 64)
			if err != nil {
				t.Fatalf("line %q: time %d: %v", ln, i, err)
			}
			ts[i] = v
		}
		if !(ts[0] > 0 && ts[0] <= ts[1] && ts[1] <= ts[2] && ts[2] <= ts[3]) {
			t.Fatalf("line %q: times out of order", ln)
		}
		k, err := strconv.Atoi(f[5])
		if err != nil {
			t.Fatalf("line %q: records: %v", ln, err)
		}
		recs += k
	}
	if recs != n {
		t.Fatalf("traced %d records, the layer consumed %d", recs, n)
	}
}
