package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/schemas"
)

// TestArchiveCommand runs `lambdarec archive` against an embedded broker: it
// commits the produced records, serves its metrics, and stops cleanly when
// its context ends.
func TestArchiveCommand(t *testing.T) {
	br := startBroker(t, 2, "events", "events.dlq")
	cl, err := kafka.NewClient([]string{br.Addr()}, kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ev := &schemas.UserInteraction{EventId: "e-1", Timestamp: timestamppb.Now(), UserId: "u", SessionId: "s",
		Interaction: &schemas.UserInteraction_PageView{PageView: &schemas.PageView{ItemId: "i"}}}
	val, _ := schemas.Encode(nil, ev)
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Key: []byte("s"), Value: val}, &kgo.Record{Key: []byte("s"), Value: []byte("junk")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr serveTestBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"archive", "--brokers", br.Addr(),
			"--warehouse", "file://" + filepath.Join(dir, "warehouse"), "--catalog-uri", "file:" + filepath.Join(dir, "catalog.db"),
			"--max-interval", "20ms", "--metrics-addr", "127.0.0.1:0"}, &stdout, &stderr)
	}()
	listening := regexp.MustCompile(`msg="metrics listening".* addr=(\S+)`)
	committed := regexp.MustCompile(`msg="archive commit".* records=1 dead_lettered=1 `)
	var base string
	for deadline := time.Now().Add(time.Minute); ; {
		if m := listening.FindStringSubmatch(stderr.String()); m != nil && base == "" {
			base = "http://" + m[1]
		}
		if base != "" && committed.MatchString(stderr.String()) {
			break
		}
		select {
		case code := <-exit:
			t.Fatalf("archive exited with %d: %s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("archive did not commit: %s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `lambdarec_archive_records_total{outcome="archived"} 1`) {
		t.Fatalf("/metrics lacks the archived counter:\n%s", body)
	}
	lintMetrics(t, "archive", body)
	if status, body := serveTestDo(t, http.MethodGet, base+"/readyz", "", ""); status != http.StatusOK || !strings.Contains(body, `"ready"`) {
		t.Fatalf("/readyz of a running archive: %d %s", status, body)
	}
	cancel()
	if code := <-exit; code != 0 {
		t.Fatalf("archive exited with %d: %s", code, stderr.String())
	}
}
