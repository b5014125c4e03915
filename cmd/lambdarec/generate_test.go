package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/generate"
)

func TestGenerateCommandKafka(t *testing.T) {
	br := startBroker(t, 3)
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"generate", "--brokers", br.Addr(), "--topic", "clicks", "--partitions", "3",
		"--count", "5000", "--seed", "9", "--dup-rate", "0.02", "--malformed-rate", "0.01"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "generated 5000 records") || !strings.Contains(stdout.String(), "0 failed") {
		t.Errorf("summary: %q", stdout.String())
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, "clicks")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	parts := 0
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset; parts++ })
	if total != 5000 || parts != 3 {
		t.Errorf("topic clicks: %d records in %d partitions, want 5000 in 3", total, parts)
	}
}

func TestGenerateCommandFile(t *testing.T) {
	dir := t.TempDir()
	out, planted := filepath.Join(dir, "events.jsonl"), filepath.Join(dir, "planted.json")
	args := []string{"generate", "--out", out, "--planted", planted, "--count", "2000", "--seed", "4",
		"--start", "2025-06-01T10:00:00Z", "--items", "800", "--categories", "20", "--users", "1000", "--late-rate", "0.1"}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	first, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	second, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Error("the same seed and start wrote different files")
	}
	n, late := 0, 0
	for rec, err := range generate.ReadRecords(bytes.NewReader(first)) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		if rec.Late {
			late++
		}
		if ts := rec.Event.EventTime(); !rec.Late && ts.Before(time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)) {
			t.Fatalf("event at %s, before --start", ts)
		}
	}
	if n != 2000 || late < 100 || late > 300 {
		t.Errorf("%d records, %d late", n, late)
	}
	f, err := os.Open(planted)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := generate.ReadPlanted(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 800 || len(p.Categories) != 20 || p.Seed != 4 {
		t.Errorf("planted: %d items, %d categories, seed %d", len(p.Items), len(p.Categories), p.Seed)
	}
}

func TestGenerateCommandBadFlags(t *testing.T) {
	f := func(want string, args ...string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), append([]string{"generate"}, args...), &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), want) {
			t.Errorf("%v: exit %d, stderr %q, want %q", args, code, stderr.String(), want)
		}
	}
	f("dup rate", "--out", filepath.Join(t.TempDir(), "x"), "--dup-rate", "2")
	f("--start", "--out", filepath.Join(t.TempDir(), "x"), "--start", "yesterday")
}
