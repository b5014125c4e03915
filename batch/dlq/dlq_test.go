package dlq_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lambdarec/lambdarec/batch/dlq"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/schemas"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func event(id string, at time.Time, item string) *schemas.UserInteraction {
	return &schemas.UserInteraction{EventId: id, Timestamp: timestamppb.New(at), UserId: "u1", SessionId: "s-" + id,
		Interaction: &schemas.UserInteraction_PageView{PageView: &schemas.PageView{ItemId: item, Category: "c"}}}
}

// TestReplayLandsEachLetterOnce fills a DLQ as the archive does (events once
// rejected for a future timestamp, events without an item, undecodable
// bytes), then summarises, replays by reason twice and replays fixed letters
// twice: every replayable letter lands in events exactly once, the rest never.
func TestReplayLandsEachLetterOnce(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, b *kafkatest.Broker) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		topic, dlqTopic := b.Unique(t, "events"), b.Unique(t, "events.dlq")
		b.Topics(t, 3, topic, dlqTopic)
		cl := b.Client(t)
		connect := func(opts ...kgo.Opt) (*kgo.Client, error) { return kafka.Connect(b.Brokers, b.Security, opts...) }

		now := time.Now()
		var letters []*kgo.Record
		src := func(i int, value []byte) *kgo.Record {
			return &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("s-%d", i)), Value: value, Partition: int32(i % 3), Offset: int64(100 + i)}
		}
		const future, noItem, garbage = 12, 5, 4
		for i := range future {
			v, _ := schemas.Encode(nil, event(fmt.Sprintf("f%d", i), now.Add(-time.Minute), "i1"))
			letters = append(letters, kafka.DeadLetter(dlqTopic, src(i, v), "archive",
				errors.New("timestamp: 2026-11-29T23:00:00Z is more than 1h0m0s in the future")))
		}
		for i := range noItem {
			v, _ := schemas.Encode(nil, event(fmt.Sprintf("n%d", i), now.Add(-time.Minute), ""))
			letters = append(letters, kafka.DeadLetter(dlqTopic, src(100+i, v), "archive",
				errors.New("page_view.item_id: is required")))
		}
		for i := range garbage {
			letters = append(letters, kafka.DeadLetter(dlqTopic, src(200+i, []byte{0xff, 0xff, 0x01, byte(i)}), "archive",
				errors.New("decode protobuf UserInteraction: cannot parse invalid wire-format data")))
		}
		if err := cl.ProduceSync(ctx, letters...).FirstErr(); err != nil {
			t.Fatal(err)
		}

		// Summary by stage and reason.
		var sum dlq.Summarizer
		var all []dlq.Letter
		if err := dlq.Read(ctx, connect, dlqTopic, time.Now(), func(l dlq.Letter) error {
			sum.Add(l)
			all = append(all, l)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		counts := map[string]int64{}
		for _, r := range sum.Rows() {
			if r.Stage != "archive" {
				t.Fatalf("row %+v: stage", r)
			}
			counts[r.Class] += r.Count
		}
		want := map[string]int64{"timestamp": future, "page_view.item_id": noItem, "decode protobuf UserInteraction": garbage}
		for k, v := range want {
			if counts[k] != v {
				t.Fatalf("summary %v, want %v", counts, want)
			}
		}
		if len(all) != len(letters) || all[0].Source.Partition < 0 || all[0].Event == nil {
			t.Fatalf("read %d letters (first %+v); want %d with source and event", len(all), all[0], len(letters))
		}

		// Replay by reason, twice.
		byReason := func(s string) func(dlq.Letter) bool {
			return func(l dlq.Letter) bool { return strings.Contains(l.Reason, s) }
		}
		cfg := dlq.ReplayConfig{Connect: connect, DLQTopic: dlqTopic, Topic: topic, Match: byReason("in the future")}
		for run, wantProduced := range []int{future, 0} {
			res, err := dlq.Replay(ctx, cfg, discard)
			if err != nil {
				t.Fatal(err)
			}
			if res.Selected != future || res.Produced != wantProduced || res.AlreadyReplayed != future-wantProduced {
				t.Fatalf("replay %d: %+v; want %d produced", run+1, res, wantProduced)
			}
		}
		// Without a fix, letters whose events are still invalid are not
		// replayed.
		res, err := dlq.Replay(ctx, dlq.ReplayConfig{Connect: connect, DLQTopic: dlqTopic, Topic: topic, Match: byReason("item_id")}, discard)
		if err != nil || res.Produced != 0 || res.StillInvalid != noItem {
			t.Fatalf("replay of invalid letters: %+v, %v", res, err)
		}
		// With a fix file (dlq show --json, edited), twice.
		var fixFile bytes.Buffer
		for _, l := range all {
			if l.Class() != "page_view.item_id" {
				continue
			}
			ev := l.Event
			ev.GetPageView().ItemId = "i-fixed"
			js, _ := schemas.MarshalJSON(ev)
			line, _ := json.Marshal(dlq.Fix{DLQ: l.DLQ, Event: js})
			fixFile.Write(append(line, '\n'))
		}
		fixes, err := dlq.ReadFixes(bytes.NewReader(fixFile.Bytes()), time.Now())
		if err != nil || len(fixes) != noItem {
			t.Fatalf("fixes: %d, %v", len(fixes), err)
		}
		for run, wantProduced := range []int{noItem, 0} {
			res, err := dlq.Replay(ctx, dlq.ReplayConfig{Connect: connect, DLQTopic: dlqTopic, Topic: topic, Fixes: fixes}, discard)
			if err != nil || res.Produced != wantProduced || res.AlreadyReplayed != noItem-wantProduced {
				t.Fatalf("fixed replay %d: %+v, %v; want %d produced", run+1, res, err, wantProduced)
			}
		}
		// A fix that is still invalid is refused, naming the field.
		if _, err := dlq.ReadFixes(strings.NewReader(`{"dlq":{"partition":0,"offset":1},"event":{"event_id":"x","user_id":"u","session_id":"s","timestamp":"2026-01-01T00:00:00Z","page_view":{}}}`), time.Now()); err == nil || !strings.Contains(err.Error(), "item_id") {
			t.Fatalf("invalid fix: %v", err)
		}

		// The events topic: each replayable letter exactly once, fixed
		// events carry the fix.
		seen := map[dlq.Position]int{}
		items := map[string]int{}
		consume := b.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		for total := 0; total < future+noItem; {
			fs := consume.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				t.Fatalf("read back %d of %d replays: %v", total, future+noItem, err)
			}
			fs.EachRecord(func(r *kgo.Record) {
				total++
				p, _ := kafka.Header(r, dlq.HeaderReplayPartition)
				o, _ := kafka.Header(r, dlq.HeaderReplayOffset)
				var pos dlq.Position
				fmt.Sscan(p, &pos.Partition)
				fmt.Sscan(o, &pos.Offset)
				seen[pos]++
				var ev schemas.UserInteraction
				if err := schemas.Decode(r.Value, &ev, time.Now()); err != nil {
					t.Errorf("replayed record does not decode: %v", err)
				}
				items[ev.GetPageView().GetItemId()]++
			})
		}
		// Nothing more arrives.
		short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
		extra := consume.PollFetches(short)
		cancelShort()
		if n := extra.NumRecords(); n != 0 {
			t.Fatalf("%d records past the expected replays", n)
		}
		if len(seen) != future+noItem {
			t.Fatalf("%d distinct letters replayed, want %d", len(seen), future+noItem)
		}
		for pos, n := range seen {
			if n != 1 {
				t.Fatalf("letter %+v replayed %d times", pos, n)
			}
		}
		if items["i1"] != future || items["i-fixed"] != noItem {
			t.Fatalf("replayed items %v", items)
		}
	})
}
