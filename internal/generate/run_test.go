package generate

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFileSinkRoundTrip(t *testing.T) {
	cfg := Config{Seed: 4, Count: 3000, DupRate: 0.05, LateRate: 0.05, MalformedRate: 0.05}
	var buf bytes.Buffer
	st, err := newGen(t, cfg).Run(context.Background(), NewFileSink(&buf))
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != cfg.Count || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
	if lines := strings.Count(buf.String(), "\n"); lines != int(cfg.Count) {
		t.Fatalf("%d lines, want %d", lines, cfg.Count)
	}
	want := newGen(t, cfg)
	i := 0
	for rec, err := range ReadRecords(&buf) {
		if err != nil {
			t.Fatal(err)
		}
		w := want.Next()
		if !bytes.Equal(rec.Key, w.Key) || !bytes.Equal(rec.Value, w.Value) || rec.Dup != w.Dup || rec.Late != w.Late || rec.Malformed != w.Malformed {
			t.Fatalf("line %d differs from the generated record", i+1)
		}
		if (rec.Event == nil) != w.Malformed || (rec.Event != nil && rec.Event.GetEventId() != w.Event.GetEventId()) {
			t.Fatalf("line %d: event %v", i+1, rec.Event)
		}
		i++
	}
	if i != int(cfg.Count) {
		t.Fatalf("read %d records, want %d", i, cfg.Count)
	}
}

func TestReadRecordsErrors(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		var err error
		for _, e := range ReadRecords(strings.NewReader(in)) {
			if e != nil {
				err = e
			}
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one containing %q", in, err, want)
		}
	}
	f("{\"key\":\"s\",\"value\":\"AA==\"}\nnot json\n", "line 1: value")
	f("{\"key\":\"s\",\"value\":\"AA==\",\"malformed\":true}\nnot json\n", "line 2")
	f("{\"key\":\"s\",\"value\":\"!!\"}\n", "line 1")
}

func TestRunRateAndDuration(t *testing.T) {
	// Run never writes faster than Rate (a record may go a millisecond
	// early: Run sleeps only when a millisecond or more ahead) and stops
	// once Duration passed.
	// What it reaches within Duration depends on the CPU it gets (a stall
	// past the deadline ends the run behind schedule: at load 17 a run once
	// wrote fewer than 700 of the 1000), so only bounds that hold however
	// the process is scheduled are asserted.
	g := newGen(t, Config{Seed: 1, Rate: 2000, Duration: 500 * time.Millisecond})
	st, err := g.Run(context.Background(), NewFileSink(&bytes.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	if st.Elapsed < 500*time.Millisecond || st.Elapsed > 30*time.Second {
		t.Errorf("ran for %s", st.Elapsed)
	}
	if st.Records < 1 || float64(st.Records) > 2000*(st.Elapsed+time.Millisecond).Seconds()+1 {
		t.Errorf("%d records at 2000/s in %s", st.Records, st.Elapsed)
	}

	// A count at a rate takes about count/rate at least: the record n is
	// not written more than a millisecond before n/rate (Run sleeps only
	// when a millisecond or more ahead).
	g = newGen(t, Config{Seed: 1, Rate: 2000, Count: 400})
	if st, err = g.Run(context.Background(), NewFileSink(&bytes.Buffer{})); err != nil {
		t.Fatal(err)
	}
	if st.Records != 400 || st.Elapsed < 198*time.Millisecond {
		t.Errorf("%d records in %s, want 400 in 198.5ms or more at 2000/s", st.Records, st.Elapsed)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	g := newGen(t, Config{Seed: 1, Rate: 1000})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancelled 200 ms after the first record, not after the test's start:
	// on a loaded machine Run may start later than a timer set here.
	sink := &cancelAfterFirst{Sink: NewFileSink(&bytes.Buffer{}), after: 200 * time.Millisecond, cancel: cancel}
	done := make(chan Stats)
	go func() {
		st, err := g.Run(ctx, sink)
		if err != nil {
			t.Error(err)
		}
		done <- st
	}()
	select {
	case st := <-done:
		// The cancel may come late on a loaded machine: bound by the time
		// the run actually took.
		if st.Records == 0 || float64(st.Records) > 1000*(st.Elapsed+time.Millisecond).Seconds()+1 {
			t.Errorf("%d records in %s at 1000/s", st.Records, st.Elapsed)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after its context was cancelled")
	}
}

// cancelAfterFirst is a Sink that calls cancel a while after its first
// record.
type cancelAfterFirst struct {
	Sink
	after  time.Duration
	cancel context.CancelFunc
	once   sync.Once
}

func (c *cancelAfterFirst) Write(ctx context.Context, rec Record) error {
	c.once.Do(func() { time.AfterFunc(c.after, c.cancel) })
	return c.Sink.Write(ctx, rec)
}

type failingSink struct{ n int }

func (f *failingSink) Write(context.Context, Record) error {
	if f.n++; f.n > 10 {
		return errors.New("disk full")
	}
	return nil
}
func (f *failingSink) Flush(context.Context) error { return nil }

func TestRunReportsSinkErrors(t *testing.T) {
	st, err := newGen(t, Config{Seed: 1, Count: 100}).Run(context.Background(), &failingSink{})
	if err == nil || !strings.Contains(err.Error(), "disk full") || st.Records != 11 {
		t.Errorf("stats %+v, error %v", st, err)
	}
}

func FuzzReadRecords(f *testing.F) {
	var buf bytes.Buffer
	if _, err := newGen(f, Config{Seed: 1, Count: 3, MalformedRate: 0.3}).Run(context.Background(), NewFileSink(&buf)); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("{\"key\":\"s\",\"value\":\"\"}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for rec, err := range ReadRecords(bytes.NewReader(b)) {
			if err == nil && !rec.Malformed && rec.Event == nil {
				t.Fatal("record without event or malformed flag")
			}
		}
	})
}
