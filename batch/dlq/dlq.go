// Package dlq owns the tooling of the dead-letter topic (`events.dlq`): reading
// its letters with their reasons (Read), counting them by stage, reason and
// hour (Summarize), and sending selected letters back to `events`, as they
// are or fixed (Replayer).
//
// Exactly once per dead letter: every record a replay produces carries the
// position of the letter it replays (HeaderReplayPartition and
// HeaderReplayOffset). Before producing, a replay reads `events` from the
// first offset whose timestamp is at or after the oldest selected letter's
// (a replay is always produced after its letter was written) to the end, and
// skips every letter already replayed. A replay that dies midway, or whose
// acknowledgement is lost, therefore leaves nothing to double: the next run
// finds what reached the log. Two replays must not run at once (nothing
// serialises them); the command is an operator's tool.
//
// A letter is replayed only if its event now decodes and validates (or its
// fix does): an unchanged bad record would only come back to the DLQ.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/schemas"
)

// Headers of a replayed record: the DLQ position of the letter it replays.
const (
	HeaderReplayPartition = "lambdarec.replay.dlq_partition"
	HeaderReplayOffset    = "lambdarec.replay.dlq_offset"
)

// Position is a record's place in a topic.
type Position struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

// Letter is one record of the dead-letter topic.
type Letter struct {
	// DLQ is the letter's own position in the DLQ topic.
	DLQ  Position  `json:"dlq"`
	Time time.Time `json:"time"`
	// Stage rejected the record ("archive", …), for Reason.
	Stage  string `json:"stage"`
	Reason string `json:"reason"`
	// Source is where the rejected record was (Partition -1 when unknown).
	SourceTopic string   `json:"source_topic,omitempty"`
	Source      Position `json:"source"`
	Key         []byte   `json:"key,omitempty"`
	Value       []byte   `json:"value,omitempty"`
	// Event is the value decoded (nil when it does not decode); Invalid is
	// why it does not decode or validate now ("" when it would be accepted).
	Event   *schemas.UserInteraction `json:"-"`
	Invalid string                   `json:"invalid,omitempty"`
}

// Class is the reason's class: the text before its first colon (the field
// named by a validation error, or the decoder that failed).
func (l Letter) Class() string { return ReasonClass(l.Reason) }

// ReasonClass returns the class of a reason text (see Letter.Class).
func ReasonClass(reason string) string {
	c, _, _ := strings.Cut(reason, ":")
	c = strings.TrimSpace(c)
	if c == "" {
		return "(none)"
	}
	return c
}

func letterOf(r *kgo.Record, now time.Time) Letter {
	l := Letter{DLQ: Position{r.Partition, r.Offset}, Time: r.Timestamp.UTC(), Key: r.Key, Value: r.Value, Source: Position{-1, -1}}
	l.Stage, _ = kafka.Header(r, kafka.HeaderStage)
	l.Reason, _ = kafka.Header(r, kafka.HeaderReason)
	l.SourceTopic, _ = kafka.Header(r, kafka.HeaderSourceTopic)
	if v, ok := kafka.Header(r, kafka.HeaderSourcePartition); ok {
		if p, err := strconv.ParseInt(v, 10, 32); err == nil {
			l.Source.Partition = int32(p)
		}
	}
	if v, ok := kafka.Header(r, kafka.HeaderSourceOffset); ok {
		if o, err := strconv.ParseInt(v, 10, 64); err == nil {
			l.Source.Offset = o
		}
	}
	ev := &schemas.UserInteraction{}
	err := schemas.Decode(r.Value, ev, now)
	var de *schemas.DecodeError
	if !errors.As(err, &de) {
		l.Event = ev // decoded, valid or not
	}
	if err != nil {
		l.Invalid = err.Error()
	}
	return l
}

// Connector makes Kafka clients with the deployment's brokers and security.
type Connector func(opts ...kgo.Opt) (*kgo.Client, error)

// Read calls fn with every letter of topic, from the start of each
// partition up to its end when Read began, in partition and offset order
// within a partition. now is the clock letters are validated against.
func Read(ctx context.Context, connect Connector, topic string, now time.Time, fn func(Letter) error) error {
	return readTopic(ctx, connect, topic, nil, func(r *kgo.Record) error { return fn(letterOf(r, now)) })
}

// readTopic reads topic from from (partition → offset; absent partitions
// from their start) up to the end offsets when it began.
func readTopic(ctx context.Context, connect Connector, topic string, from map[int32]int64, fn func(*kgo.Record) error) error {
	admCl, err := connect()
	if err != nil {
		return err
	}
	adm := kadm.NewClient(admCl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	starts, serr := adm.ListStartOffsets(ctx, topic)
	if serr == nil {
		serr = starts.Error()
	}
	admCl.Close()
	if err = errors.Join(err, serr); err != nil {
		return fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	todo := map[int32]int64{} // partition → end (exclusive)
	offsets := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		start := max(from[o.Partition], 0)
		if s, ok := starts.Lookup(topic, o.Partition); ok {
			start = max(start, s.Offset)
		}
		if o.Offset > start {
			todo[o.Partition] = o.Offset
			offsets[o.Partition] = kgo.NewOffset().At(start)
		}
	})
	if len(todo) == 0 {
		return nil
	}
	cl, err := connect(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(todo) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("fetch %s/%d: %w", t, p, err))
		})
		if ferr != nil {
			return ferr
		}
		var cbErr error
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := todo[r.Partition]
			if !ok || r.Offset >= end || cbErr != nil {
				return
			}
			cbErr = fn(r)
			if r.Offset+1 >= end {
				delete(todo, r.Partition)
			}
		})
		if cbErr != nil {
			return cbErr
		}
	}
	return nil
}

// SummaryRow counts the letters of one stage, reason class and hour.
type SummaryRow struct {
	Stage string    `json:"stage"`
	Class string    `json:"reason"`
	Hour  time.Time `json:"hour"`
	Count int64     `json:"count"`
	// Example is one full reason of the group.
	Example string `json:"example"`
}

// Summarizer counts letters by stage, reason class and hour.
type Summarizer struct {
	rows map[[3]string]*SummaryRow
}

// Add counts l.
func (s *Summarizer) Add(l Letter) {
	if s.rows == nil {
		s.rows = map[[3]string]*SummaryRow{}
	}
	h := l.Time.Truncate(time.Hour)
	k := [3]string{l.Stage, l.Class(), h.Format(time.RFC3339)}
	r := s.rows[k]
	if r == nil {
		r = &SummaryRow{Stage: l.Stage, Class: l.Class(), Hour: h, Example: l.Reason}
		s.rows[k] = r
	}
	r.Count++
}

// Rows returns the counts by stage, reason, then hour.
func (s *Summarizer) Rows() []SummaryRow {
	out := make([]SummaryRow, 0, len(s.rows))
	for _, k := range slices.SortedFunc(maps.Keys(s.rows), func(a, b [3]string) int {
		return strings.Compare(a[0]+"\x00"+a[1]+"\x00"+a[2], b[0]+"\x00"+b[1]+"\x00"+b[2])
	}) {
		out = append(out, *s.rows[k])
	}
	return out
}
