package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestBackfillCommand loads what `lambdarec generate --out` wrote into a data
// directory, twice: the second run changes nothing.
func TestBackfillCommand(t *testing.T) {
	isolateIceberg(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "history.jsonl")
	cmd := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Fatalf("lambdarec %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	cmd("generate", "--out", file, "--count", "3000", "--seed", "4", "--malformed-rate", "0.01", "--start", "2026-01-01T00:00:00Z")
	data := filepath.Join(dir, "data")
	out := cmd("backfill", "--data-dir", data, file)
	m := regexp.MustCompile(`(\d+) events loaded, (\d+) rejected`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("first backfill:\n%s", out)
	}
	loaded, _ := strconv.Atoi(m[1])
	rejected, _ := strconv.Atoi(m[2])
	if loaded == 0 || rejected == 0 || loaded+rejected != 3000 {
		t.Fatalf("first backfill: %d loaded + %d rejected, want 3000 with some malformed rejected:\n%s", loaded, rejected, out)
	}
	if out := cmd("backfill", "--data-dir", data, file); !strings.Contains(out, "already loaded") || strings.Contains(out, "events loaded") {
		t.Fatalf("second backfill:\n%s", out)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"backfill", "--data-dir", data, filepath.Join(dir, "nothing.csv")}, &stdout, &stderr); code == 0 {
		t.Fatal("a file of unknown format was accepted")
	}
}
