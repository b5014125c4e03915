package generate

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/lambdarec/lambdarec/schemas"
)

// Sink receives the records of Run.
type Sink interface {
	// Write hands rec over; it may return before rec is stored. An error
	// stops Run.
	Write(ctx context.Context, rec Record) error
	// Flush waits until everything written is stored or has failed.
	Flush(ctx context.Context) error
}

// FailureCounter is implemented by sinks that store asynchronously and count
// the records they could not store.
type FailureCounter interface {
	// Failures returns how many records failed and the first error.
	Failures() (int64, error)
}

// Stats are the results of Run.
type Stats struct {
	Counts
	// Failed is the number of records the sink could not store.
	Failed  int64         `json:"failed"`
	Elapsed time.Duration `json:"elapsed"`
}

// PerSecond returns the records per second of wall-clock time.
func (s Stats) PerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Records) / s.Elapsed.Seconds()
}

// Run writes records to sink at cfg.Rate until cfg.Count records were
// written, cfg.Duration passed or ctx ended, logging progress every
// cfg.ProgressInterval. It then flushes the sink (for at most
// cfg.FlushTimeout once ctx has ended) and returns what it produced. The
// error reports a sink that failed or records it could not store; an ended
// ctx is a normal stop, not an error.
func (g *Generator) Run(ctx context.Context, sink Sink) (Stats, error) {
	cfg := g.cfg
	// Records already handed to the sink get FlushTimeout to be stored after
	// ctx ends, rather than being cancelled with it.
	sinkCtx, cancelSink := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSink()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		t := time.NewTimer(cfg.FlushTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			cancelSink()
		}
	}()

	base := g.counts
	start := time.Now()
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = start.Add(cfg.Duration)
	}
	lastLog, lastN := start, int64(0)
	var runErr error
	var n int64
	for ; cfg.Count == 0 || n < cfg.Count; n++ {
		if n&127 == 0 || cfg.Rate > 0 {
			if ctx.Err() != nil {
				break
			}
			now := time.Now()
			if !deadline.IsZero() && !now.Before(deadline) {
				break
			}
			if now.Sub(lastLog) >= cfg.ProgressInterval {
				cfg.Log.Info("generate progress", "records", n, "events_per_sec", int64(float64(n-lastN)/now.Sub(lastLog).Seconds()))
				lastLog, lastN = now, n
			}
			if cfg.Rate > 0 {
				// Sleep only when at least a millisecond ahead of schedule.
				due := start.Add(time.Duration(float64(n) / cfg.Rate * 1e9))
				if ahead := due.Sub(now); ahead >= time.Millisecond {
					if !sleep(ctx, ahead) {
						break
					}
				}
			}
		}
		if err := sink.Write(sinkCtx, g.Next()); err != nil {
			runErr = fmt.Errorf("write record %d: %w", n, err)
			break
		}
	}
	flushErr := sink.Flush(sinkCtx)
	st := Stats{Elapsed: time.Since(start)}
	st.Counts = g.counts
	st.Records -= base.Records
	st.Dups -= base.Dups
	st.Late -= base.Late
	st.Malformed -= base.Malformed
	st.Sessions -= base.Sessions
	var errs []error
	if runErr != nil {
		errs = append(errs, runErr)
	}
	if flushErr != nil {
		errs = append(errs, fmt.Errorf("flush: %w", flushErr))
	}
	if fc, ok := sink.(FailureCounter); ok {
		var first error
		st.Failed, first = fc.Failures()
		if st.Failed > 0 && flushErr == nil {
			errs = append(errs, fmt.Errorf("%d of %d records not stored, first: %w", st.Failed, st.Records, first))
		}
	}
	cfg.Log.Info("generate done", "records", st.Records, "dups", st.Dups, "late", st.Late, "malformed", st.Malformed,
		"failed", st.Failed, "elapsed", st.Elapsed.Round(time.Millisecond), "events_per_sec", int64(st.PerSecond()))
	return st, errors.Join(errs...)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// KafkaSink produces records asynchronously to a topic with a franz-go
// client, keyed by session id, and counts the records Kafka did not take.
type KafkaSink struct {
	cl     *kgo.Client
	topic  string
	pool   sync.Pool
	failed atomic.Int64
	acked  atomic.Int64
	mu     sync.Mutex
	first  error
	done   func(*kgo.Record, error)
}

// KafkaLinger is how long a client producing generated records should let
// a partition's batch gather records (kgo.ProducerLinger), against 5 ms for
// lambdarec's other clients: a flood of 50,000 events/s over 6 partitions
// then makes batches of ~400 records instead of ~40, so the broker writes,
// and every consumer checks and decompresses, a tenth as many batches. The
// records are synthetic: their 50 ms more on the way matter to nobody.
const KafkaLinger = 50 * time.Millisecond

// NewKafkaSink returns a sink producing to topic with cl. The caller owns
// cl and closes it after Run.
func NewKafkaSink(cl *kgo.Client, topic string) *KafkaSink {
	k := &KafkaSink{cl: cl, topic: topic}
	k.pool.New = func() any { return new(kgo.Record) }
	k.done = func(r *kgo.Record, err error) {
		if err != nil {
			if k.failed.Add(1) == 1 {
				k.mu.Lock()
				k.first = err
				k.mu.Unlock()
			}
		} else {
			k.acked.Add(1)
		}
		*r = kgo.Record{}
		k.pool.Put(r)
	}
	return k
}

// Write produces rec; it blocks only while the client's buffer is full.
func (k *KafkaSink) Write(ctx context.Context, rec Record) error {
	r := k.pool.Get().(*kgo.Record)
	r.Topic, r.Key, r.Value = k.topic, rec.Key, rec.Value
	k.cl.Produce(ctx, r, k.done)
	return nil
}

// Flush waits for every produced record's acknowledgement or failure.
func (k *KafkaSink) Flush(ctx context.Context) error {
	if err := k.cl.Flush(ctx); err != nil {
		return fmt.Errorf("flush kafka producer: %w", err)
	}
	return nil
}

// Failures returns the records Kafka did not acknowledge and the first error.
func (k *KafkaSink) Failures() (int64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.failed.Load(), k.first
}

// Acked returns the records Kafka acknowledged.
func (k *KafkaSink) Acked() int64 { return k.acked.Load() }

// FileSink writes records as JSON lines, one object per record:
//
//	{"key":"<session id>","value":"<base64 of the exact Kafka record value>",
//	 "event":{<protojson of the event, proto field names>},
//	 "dup":true,"late":true,"malformed":true}
//
// "event" is absent for malformed records; the flags are present only when
// true. ReadRecords reads the file back.
type FileSink struct {
	w   *bufio.Writer
	buf []byte
}

// NewFileSink returns a sink writing JSON lines to w. Flush flushes the
// buffer; the caller owns w.
func NewFileSink(w io.Writer) *FileSink { return &FileSink{w: bufio.NewWriterSize(w, 256<<10)} }

type fileLine struct {
	Key       string          `json:"key"`
	Value     []byte          `json:"value"`
	Event     json.RawMessage `json:"event,omitempty"`
	Dup       bool            `json:"dup,omitempty"`
	Late      bool            `json:"late,omitempty"`
	Malformed bool            `json:"malformed,omitempty"`
}

// Write appends rec as one line.
func (f *FileSink) Write(_ context.Context, rec Record) error {
	l := fileLine{Key: string(rec.Key), Value: rec.Value, Dup: rec.Dup, Late: rec.Late, Malformed: rec.Malformed}
	if rec.Event != nil {
		ev, err := schemas.MarshalJSON(rec.Event)
		if err != nil {
			return fmt.Errorf("encode event %s as json: %w", rec.Event.GetEventId(), err)
		}
		l.Event = ev
	}
	b, err := json.Marshal(&l)
	if err != nil {
		return fmt.Errorf("encode record line: %w", err)
	}
	b = append(b, '\n')
	if _, err := f.w.Write(b); err != nil {
		return fmt.Errorf("write record line: %w", err)
	}
	return nil
}

// Flush writes the buffered lines through.
func (f *FileSink) Flush(context.Context) error {
	if err := f.w.Flush(); err != nil {
		return fmt.Errorf("flush records file: %w", err)
	}
	return nil
}

// MaxLineBytes bounds one line of a records file.
const MaxLineBytes = 4 << 20

// ReadRecords reads a file written by FileSink. Event is decoded from Value
// (not validated) unless the line is marked malformed. Iteration stops at the
// first error.
func ReadRecords(r io.Reader) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), MaxLineBytes)
		line := 0
		for sc.Scan() {
			line++
			var l fileLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				yield(Record{}, fmt.Errorf("records line %d: %w", line, err))
				return
			}
			rec := Record{Key: []byte(l.Key), Value: l.Value, Dup: l.Dup, Late: l.Late, Malformed: l.Malformed}
			if !l.Malformed {
				rec.Event = new(schemas.UserInteraction)
				if err := proto.Unmarshal(l.Value, rec.Event); err != nil {
					yield(Record{}, fmt.Errorf("records line %d: value: %w", line, err))
					return
				}
			}
			if !yield(rec, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			yield(Record{}, fmt.Errorf("read records: %w", err))
		}
	}
}
