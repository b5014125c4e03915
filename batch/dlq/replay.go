package dlq

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/schemas"
)

// Fix replaces the event of the letter at DLQ: one line of a fix file.
type Fix struct {
	DLQ   Position        `json:"dlq"`
	Event json.RawMessage `json:"event"`
}

// ReadFixes reads a fix file: JSON lines {"dlq":{"partition":P,"offset":O},
// "event":{protojson}} (what `lambdarec dlq show --json` prints, with the
// event edited). Every fixed event must decode and validate against now.
func ReadFixes(r io.Reader, now time.Time) (map[Position]*schemas.UserInteraction, error) {
	out := map[Position]*schemas.UserInteraction{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var f Fix
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			return nil, fmt.Errorf("fix line %d: %w", line, err)
		}
		if len(f.Event) == 0 {
			return nil, fmt.Errorf("fix line %d: no event", line)
		}
		ev := &schemas.UserInteraction{}
		if err := schemas.UnmarshalJSON(f.Event, ev); err != nil {
			return nil, fmt.Errorf("fix line %d (dlq %d/%d): %w", line, f.DLQ.Partition, f.DLQ.Offset, err)
		}
		if err := schemas.Validate(ev, now); err != nil {
			return nil, fmt.Errorf("fix line %d (dlq %d/%d): the fixed event is still invalid: %w", line, f.DLQ.Partition, f.DLQ.Offset, err)
		}
		if _, dup := out[f.DLQ]; dup {
			return nil, fmt.Errorf("fix line %d: dlq %d/%d fixed twice", line, f.DLQ.Partition, f.DLQ.Offset)
		}
		out[f.DLQ] = ev
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read fixes: %w", err)
	}
	return out, nil
}

// ReplayConfig configures a replay.
type ReplayConfig struct {
	// Connect makes Kafka clients. Required.
	Connect Connector
	// DLQTopic and Topic are the dead-letter topic and the topic replayed to.
	DLQTopic, Topic string
	// Match selects the letters to replay (nil: all).
	Match func(Letter) bool
	// Fixes, when not nil, replace the events of their letters, and only
	// letters with a fix are replayed.
	Fixes map[Position]*schemas.UserInteraction
	// DryRun selects and checks, and produces nothing.
	DryRun bool
	// Now is the clock letters are validated against. Default: time.Now.
	Now func() time.Time
}

// ReplayResult counts what a replay did.
type ReplayResult struct {
	Selected int `json:"selected"`
	// Produced to the topic now; AlreadyReplayed by an earlier replay
	// (skipped); StillInvalid letters whose event does not decode or
	// validate and has no fix (skipped).
	Produced        int `json:"produced"`
	AlreadyReplayed int `json:"already_replayed"`
	StillInvalid    int `json:"still_invalid"`
	// Reasons of the first few still-invalid letters.
	InvalidExamples []string `json:"invalid_examples,omitempty"`
}

// Replay sends the selected letters back to the topic, each once (see the
// package comment).
func Replay(ctx context.Context, cfg ReplayConfig, log *slog.Logger) (ReplayResult, error) {
	var res ReplayResult
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	now := cfg.Now()
	type todo struct {
		l     Letter
		value []byte
	}
	var sel []todo
	var oldest time.Time
	err := Read(ctx, cfg.Connect, cfg.DLQTopic, now, func(l Letter) error {
		if cfg.Match != nil && !cfg.Match(l) {
			return nil
		}
		value := l.Value
		if cfg.Fixes != nil {
			ev, ok := cfg.Fixes[l.DLQ]
			if !ok {
				return nil
			}
			b, err := schemas.Encode(nil, ev)
			if err != nil {
				return fmt.Errorf("encode the fix of dlq %d/%d: %w", l.DLQ.Partition, l.DLQ.Offset, err)
			}
			value = b
		} else if l.Invalid != "" {
			res.Selected++
			res.StillInvalid++
			if len(res.InvalidExamples) < 5 {
				res.InvalidExamples = append(res.InvalidExamples, fmt.Sprintf("dlq %d/%d: %s", l.DLQ.Partition, l.DLQ.Offset, l.Invalid))
			}
			return nil
		}
		res.Selected++
		if oldest.IsZero() || l.Time.Before(oldest) {
			oldest = l.Time
		}
		sel = append(sel, todo{l: l, value: value})
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("read %s: %w", cfg.DLQTopic, err)
	}
	if len(sel) == 0 {
		return res, nil
	}
	done, err := Replayed(ctx, cfg.Connect, cfg.Topic, oldest)
	if err != nil {
		return res, err
	}
	var recs []*kgo.Record
	for _, s := range sel {
		if done[s.l.DLQ] {
			res.AlreadyReplayed++
			continue
		}
		recs = append(recs, &kgo.Record{Topic: cfg.Topic, Key: s.l.Key, Value: s.value, Headers: []kgo.RecordHeader{
			{Key: HeaderReplayPartition, Value: strconv.AppendInt(nil, int64(s.l.DLQ.Partition), 10)},
			{Key: HeaderReplayOffset, Value: strconv.AppendInt(nil, s.l.DLQ.Offset, 10)},
		}})
	}
	if cfg.DryRun || len(recs) == 0 {
		return res, nil
	}
	cl, err := cfg.Connect()
	if err != nil {
		return res, err
	}
	defer cl.Close()
	var errs []error
	for _, r := range cl.ProduceSync(ctx, recs...) {
		if r.Err != nil {
			errs = append(errs, r.Err)
			continue
		}
		res.Produced++
	}
	if err := errors.Join(errs...); err != nil {
		// What reached the log is found by the next run; run it again.
		return res, fmt.Errorf("produce %d of %d replays to %s (run the replay again: replayed letters are skipped): %w", len(errs), len(recs), cfg.Topic, err)
	}
	log.Info("dead letters replayed", "topic", cfg.Topic, "produced", res.Produced, "already_replayed", res.AlreadyReplayed, "still_invalid", res.StillInvalid)
	return res, nil
}

// Replayed returns the DLQ positions that records of topic replay, reading
// it from the first offset of each partition with a timestamp at or after
// since.
func Replayed(ctx context.Context, connect Connector, topic string, since time.Time) (map[Position]bool, error) {
	admCl, err := connect()
	if err != nil {
		return nil, err
	}
	from := map[int32]int64{}
	listed, err := kadm.NewClient(admCl).ListOffsetsAfterMilli(ctx, since.Add(-time.Second).UnixMilli(), topic)
	admCl.Close()
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("find the offsets of %s at %s: %w", topic, since.Format(time.RFC3339), err)
	}
	listed.Each(func(o kadm.ListedOffset) { from[o.Partition] = o.Offset })
	done := map[Position]bool{}
	err = readTopic(ctx, connect, topic, from, func(r *kgo.Record) error {
		ps, ok1 := kafka.Header(r, HeaderReplayPartition)
		os, ok2 := kafka.Header(r, HeaderReplayOffset)
		if !ok1 || !ok2 {
			return nil
		}
		p, err1 := strconv.ParseInt(ps, 10, 32)
		o, err2 := strconv.ParseInt(os, 10, 64)
		if err1 == nil && err2 == nil {
			done[Position{int32(p), o}] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %s for earlier replays: %w", topic, err)
	}
	return done, nil
}
