package main

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/serving"
)

// batchListing is `lambdarec batch list --json`.
type batchListing struct {
	Batches []struct {
		BatchID  string          `json:"batch_id"`
		Boundary map[int32]int64 `json:"boundary"`
		Served   bool            `json:"served"`
		Pinned   bool            `json:"pinned"`
	} `json:"batches"`
	Pin struct {
		BatchID string `json:"batch_id"`
		Reason  string `json:"reason"`
	} `json:"pin"`
}

func lambdarecCmd(t *testing.T, bin string, args ...string) string {
	t.Helper()
	var stderr strings.Builder
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("lambdarec %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

func listBatches(t *testing.T, bin, dataDir string) batchListing {
	t.Helper()
	var l batchListing
	out := lambdarecCmd(t, bin, "batch", "list", "--json", "--data-dir", dataDir)
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		t.Fatalf("batch list --json: %v\n%s", err, out)
	}
	return l
}

func servedAsOf(t *testing.T, p *devProcess) *serving.BatchAsOf {
	t.Helper()
	return p.recommendations(t, url.Values{"user_id": {"nobody"}, "k": {"3"}}).AsOf.Batch
}

// servedIs reports whether an answer's as_of names batch id (as published:
// id, or id~n when served again) with its boundary.
func servedIs(b *serving.BatchAsOf, id string, boundary map[int32]int64) bool {
	return b != nil && (b.BatchID == id || strings.HasPrefix(b.BatchID, id+"~")) && maps.Equal(b.Boundary, boundary)
}

// TestBatchRollbackPinAndUnpin runs `lambdarec dev` (a batch every 3 s) and
// operates its batches with the commands, as an operator would: a rollback
// serves the previous batch (answers' as_of name it and its boundary), later
// batches are recorded but not served while it is pinned, /v1/status shows
// the pin, the pin survives a restart, and unpin serves the newest again.
func TestBatchRollbackPinAndUnpin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts lambdarec dev; not in -short")
	}
	bin := buildLambdarec(t)
	dataDir := t.TempDir()
	httpAddr, kafkaAddr := freeAddr(t), freeAddr(t)
	p := startDev(t, bin, dataDir, httpAddr, kafkaAddr)

	// Two batches recorded, the newest served.
	waitFor(t, 120*time.Second, "two batches recorded", func() bool {
		return len(listBatches(t, bin, dataDir).Batches) >= 2 && servedAsOf(t, p) != nil
	})
	out := lambdarecCmd(t, bin, "batch", "rollback", "--data-dir", dataDir)
	l := listBatches(t, bin, dataDir)
	pinned := l.Pin.BatchID
	if pinned == "" || l.Pin.Reason != "rollback" || !strings.Contains(out, pinned) {
		t.Fatalf("after rollback: pin %+v, output %q", l.Pin, out)
	}
	var boundary map[int32]int64
	for i, b := range l.Batches {
		if b.BatchID == pinned {
			boundary = b.Boundary
			if i == 0 || !b.Served || !b.Pinned {
				t.Fatalf("rolled back to batch %d of the list (%+v); want one before the newest, served and pinned", i, b)
			}
		}
	}
	waitFor(t, 30*time.Second, "answers served from the rolled-back batch", func() bool {
		return servedIs(servedAsOf(t, p), pinned, boundary)
	})
	// Later batches are recorded, not served.
	recorded := len(l.Batches)
	waitFor(t, 60*time.Second, "a batch recorded after the rollback", func() bool {
		return len(listBatches(t, bin, dataDir).Batches) > recorded
	})
	if b := servedAsOf(t, p); !servedIs(b, pinned, boundary) {
		t.Fatalf("a batch recorded after the rollback is served: as_of %+v, pinned %s", b, pinned)
	}
	// /v1/status shows the pin.
	resp, err := http.Get(p.base + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var status serving.Status
	err = json.NewDecoder(resp.Body).Decode(&status)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var batchLayer *serving.LayerReport
	for i := range status.Layers {
		if status.Layers[i].Layer == "batch" {
			batchLayer = &status.Layers[i]
		}
	}
	if batchLayer == nil || batchLayer.Details["served_batch_id"] != pinned || batchLayer.Details["pinned"] == nil {
		t.Fatalf("/v1/status batch layer does not show the pin of %s: %+v", pinned, batchLayer)
	}

	// The pin survives a restart.
	p.stop(t)
	p = startDev(t, bin, dataDir, httpAddr, kafkaAddr)
	waitFor(t, 60*time.Second, "the pinned batch served after a restart", func() bool {
		return servedIs(servedAsOf(t, p), pinned, boundary)
	})

	// Unpin: the newest batch is served again.
	lambdarecCmd(t, bin, "batch", "unpin", "--data-dir", dataDir)
	waitFor(t, 60*time.Second, "the newest batch served after unpin", func() bool {
		l := listBatches(t, bin, dataDir)
		b := servedAsOf(t, p)
		return l.Pin.BatchID == "" && len(l.Batches) > 0 && servedIs(b, l.Batches[0].BatchID, l.Batches[0].Boundary)
	})

	// Pin the served batch by id: later batches are recorded, not served.
	l = listBatches(t, bin, dataDir)
	target := l.Batches[0]
	lambdarecCmd(t, bin, "batch", "pin", "--data-dir", dataDir, target.BatchID)
	waitFor(t, 30*time.Second, "answers served from the pinned batch", func() bool {
		return servedIs(servedAsOf(t, p), target.BatchID, target.Boundary)
	})
	recorded = len(listBatches(t, bin, dataDir).Batches)
	waitFor(t, 60*time.Second, "a batch recorded after the pin", func() bool {
		return len(listBatches(t, bin, dataDir).Batches) > recorded
	})
	if b := servedAsOf(t, p); !servedIs(b, target.BatchID, target.Boundary) {
		t.Fatalf("a batch recorded after the pin is served: as_of %+v, pinned %s", b, target.BatchID)
	}
	// The oldest batch's views are gone (dev keeps the newest two and the
	// pinned one): pinning it is refused, clearly.
	l = listBatches(t, bin, dataDir)
	if len(l.Batches) < 4 {
		t.Fatalf("%d batches recorded; the test expects at least 4 by now", len(l.Batches))
	}
	oldest := l.Batches[len(l.Batches)-1].BatchID
	if out, err := exec.Command(bin, "batch", "pin", "--data-dir", dataDir, oldest).CombinedOutput(); err == nil || !strings.Contains(string(out), "view tables were removed") {
		t.Fatalf("pin of batch %s without views: %v\n%s", oldest, err, out)
	}
	if out, err := exec.Command(bin, "batch", "pin", "--data-dir", dataDir, "no-such-batch").CombinedOutput(); err == nil || !strings.Contains(string(out), "no such batch") {
		t.Fatalf("pin of an unknown batch: %v\n%s", err, out)
	}
}
