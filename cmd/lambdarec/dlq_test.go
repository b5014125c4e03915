package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/schemas"
)

// TestDLQCommands runs dlq summary, show and replay (twice) against an
// embedded broker whose DLQ holds letters as the archive writes them.
func TestDLQCommands(t *testing.T) {
	br := startBroker(t, 2, "ev", "ev.dlq")
	cl, err := kafka.NewClient([]string{br.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ev := &schemas.UserInteraction{EventId: "e1", Timestamp: timestamppb.New(time.Now().Add(-time.Minute)), UserId: "u", SessionId: "s",
		Interaction: &schemas.UserInteraction_PageView{PageView: &schemas.PageView{ItemId: "i1", Category: "c"}}}
	v, _ := schemas.Encode(nil, ev)
	src := &kgo.Record{Topic: "ev", Key: []byte("s"), Value: v, Partition: 1, Offset: 7}
	bad := &kgo.Record{Topic: "ev", Key: []byte("s"), Value: []byte{0xff, 0xff}, Partition: 0, Offset: 3}
	if err := cl.ProduceSync(context.Background(),
		kafka.DeadLetter("ev.dlq", src, "archive", errors.New("timestamp: too far in the future")),
		kafka.DeadLetter("ev.dlq", bad, "archive", errors.New("decode protobuf UserInteraction: bad wire"))).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cmd := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args = append(args, "--brokers", br.Addr(), "--topic", "ev", "--dlq-topic", "ev.dlq")
		if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Fatalf("lambdarec %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	if out := cmd("dlq", "summary"); !strings.Contains(out, "2 dead letters") || !strings.Contains(out, "timestamp") || !strings.Contains(out, "decode protobuf UserInteraction") {
		t.Fatalf("dlq summary:\n%s", out)
	}
	if out := cmd("dlq", "show", "--reason", "future"); !strings.Contains(out, `"event_id":"e1"`) || !strings.Contains(out, "source ev/1/7") || strings.Contains(out, "bad wire") {
		t.Fatalf("dlq show:\n%s", out)
	}
	if out := cmd("dlq", "replay", "--reason", "future"); !strings.Contains(out, "1 letters selected: 1 replayed to ev, 0 already") {
		t.Fatalf("first replay:\n%s", out)
	}
	if out := cmd("dlq", "replay", "--reason", "future"); !strings.Contains(out, "1 letters selected: 0 replayed to ev, 1 already") {
		t.Fatalf("second replay:\n%s", out)
	}
	if out := cmd("dlq", "replay", "--all"); !strings.Contains(out, "2 letters selected: 0 replayed to ev, 1 already replayed before (skipped), 1 still invalid") {
		t.Fatalf("replay --all:\n%s", out)
	}
}
