package speed

import (
	"log/slog"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/model"
)

// FuzzRecord feeds arbitrary record values (after a few valid ones) through
// the processor and scores the views: bad input never panics, and an invalid
// record leaves no session behind.
func FuzzRecord(f *testing.F) {
	f.Add(value("e1", "s1", "i1", t0, false), int64(0))
	f.Add(value("e2", "s1", "i2", t0.Add(time.Hour), true), int64(1000))
	f.Add([]byte{0x0a, 0x00, 0x12}, int64(-5))
	f.Add([]byte("not a protobuf"), int64(1<<40))
	f.Fuzz(func(t *testing.T, b []byte, tsMs int64) {
		p, err := newProcessor(defaultLimits(), model.DefaultParams(), slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		p.assign(0)
		for i, item := range []string{"i1", "i2", "i3"} {
			if _, err := p.record(0, int64(i), t0, value("seed"+item, "s1", item, t0, false)); err != nil {
				t.Fatal(err)
			}
		}
		s, err := p.record(0, 3, time.UnixMilli(tsMs), b)
		if err != nil && s != nil {
			t.Fatalf("invalid record returned a session: %v", err)
		}
		if err != nil && p.c.invalid != 1 {
			t.Fatalf("invalid not counted: %+v", p.c)
		}
		for _, v := range p.appendViews(nil, t0) {
			if v.SessionID == "" || v.Offset < 0 {
				t.Fatalf("bad view %+v", v)
			}
		}
		if _, err := p.copyDeltas(); err != nil {
			t.Fatal(err)
		}
	})
}
