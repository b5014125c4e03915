package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/porttest"
	"github.com/lambdarec/lambdarec/serving"
	"github.com/lambdarec/lambdarec/speed"
)

// freeAddr returns a loopback address with a port nobody listens on now,
// for a process the test starts (and may restart) on it: drawn below the
// ephemeral range (porttest), where no outgoing connection of the tests
// running beside can take it meanwhile.
func freeAddr(t *testing.T) string {
	t.Helper()
	return porttest.Addr(t)
}

// buildLambdarec builds the binary under test.
func buildLambdarec(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "lambdarec")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

type devProcess struct {
	cmd    *exec.Cmd
	base   string
	stderr *serveTestBuffer
	done   chan error
}

// startDev starts `lambdarec dev` with args, by default a fast generator
// and a batch every 3 s.
func startDev(t *testing.T, bin, dataDir, httpAddr, kafkaAddr string, args ...string) *devProcess {
	t.Helper()
	if len(args) == 0 {
		args = []string{"--rate", "300", "--batch-every", "3s"}
	}
	p := &devProcess{base: "http://" + httpAddr, stderr: &serveTestBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"dev", "--data-dir", dataDir, "--http", httpAddr, "--kafka", kafkaAddr}, args...)...)
	p.cmd.Stdout = io.Discard
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("lambdarec dev stderr (tail):\n%s", tail(p.stderr.String(), 4000))
		}
	})
	waitFor(t, 60*time.Second, "lambdarec dev ready", func() bool {
		resp, err := http.Get(p.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// stop interrupts the process as Ctrl-C would and waits for a clean exit.
func (p *devProcess) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("lambdarec dev exited with %v after SIGINT", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("lambdarec dev did not stop within 30s of SIGINT")
	}
}

func (p *devProcess) recommendations(t *testing.T, q url.Values) serving.Recommendations {
	t.Helper()
	resp, err := http.Get(p.base + "/v1/recommendations?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /v1/recommendations?%s: %d %s", q.Encode(), resp.StatusCode, b)
	}
	var r serving.Recommendations
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	return r
}

func (p *devProcess) post(t *testing.T, events ...map[string]any) {
	t.Helper()
	body, _ := json.Marshal(events)
	resp, err := http.Post(p.base+"/v1/events", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /v1/events: %d %s", resp.StatusCode, b)
	}
}

func view(id, user, session, item string, at time.Time) map[string]any {
	return map[string]any{
		"event_id": id, "timestamp": at.UTC().Format(time.RFC3339Nano),
		"user_id": user, "session_id": session,
		"product_click": map[string]any{"item_id": item, "category": "cat-000"},
	}
}

func sources(r serving.Recommendations) map[string]int {
	m := map[string]int{}
	for _, it := range r.Items {
		m[it.Source]++
	}
	return m
}

// TestDevEndToEnd runs `lambdarec dev` as a real process: once events have
// flowed and a batch ran, a known user's recommendations come from the batch;
// a new event in a new session changes that session's recommendations within
// a second, from the speed layer; Ctrl-C stops it cleanly, and a second start
// resumes from the data directory.
func TestDevEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts lambdarec dev; not in -short")
	}
	start := time.Now()
	phase := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what) }
	bin := buildLambdarec(t)
	phase("built")
	dataDir := t.TempDir()
	httpAddr, kafkaAddr := freeAddr(t), freeAddr(t)
	loopTrace := filepath.Join(t.TempDir(), "loop.trace")
	p := startDev(t, bin, dataDir, httpAddr, kafkaAddr, "--rate", "300", "--batch-every", "3s", "--speed-trace", loopTrace)
	phase("ready")

	// Once a first batch is served, a known user browses its most popular
	// items (they have neighbours); a later batch then covers the events.
	var popular []string
	waitFor(t, 90*time.Second, "a first batch", func() bool {
		r := p.recommendations(t, url.Values{"user_id": {"nobody"}, "k": {"3"}})
		popular = popular[:0]
		for _, it := range r.Items {
			popular = append(popular, it.Item)
		}
		return r.AsOf.Batch != nil && len(popular) == 3
	})
	phase("first batch")
	user := "e2e-user"
	now := time.Now()
	var evs []map[string]any
	for i, item := range popular {
		evs = append(evs, view(fmt.Sprintf("e2e-a%d", i), user, "e2e-s1", item, now.Add(time.Duration(i)*time.Second)))
	}
	p.post(t, evs...)
	var batchRecs serving.Recommendations
	waitFor(t, 90*time.Second, "batch recommendations for the known user", func() bool {
		batchRecs = p.recommendations(t, url.Values{"user_id": {user}, "k": {"10"}})
		return sources(batchRecs)["batch"] > 0
	})
	if batchRecs.AsOf.Batch == nil || batchRecs.AsOf.Batch.BatchID == "" {
		t.Fatalf("batch answer without as_of.batch: %+v", batchRecs.AsOf)
	}

	phase("batch answer")

	// /v1/status reports every layer, read from Kafka and Iceberg.
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
	layers := map[string]serving.LayerReport{}
	for _, l := range status.Layers {
		layers[l.Layer] = l
	}
	for _, name := range []string{"archive", "speed", "batch"} {
		l, ok := layers[name]
		if !ok || l.LagRecords < 0 {
			t.Fatalf("/v1/status layer %s: %+v (present %v)", name, l, ok)
		}
		// A batch every 3 s on a loaded machine may be late (twice its
		// schedule): degraded, never down.
		if !l.Healthy && (name != "batch" || l.State != serving.StateDegraded) {
			t.Fatalf("/v1/status layer %s is %s: %+v", name, l.State, l.Reasons)
		}
	}
	if id := layers["batch"].Details["batch_id"]; id == nil || id == "" {
		t.Fatalf("/v1/status batch layer names no batch: %+v", layers["batch"])
	}
	// One /metrics for every role, promlint-clean, with the batch runs.
	if resp, err = http.Get(p.base + "/metrics"); err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	lintMetrics(t, "dev", metrics)
	if !regexp.MustCompile(`(?m)^lambdarec_batch_runs_total\{result="success"\} [1-9]`).Match(metrics) ||
		!regexp.MustCompile(`(?m)^lambdarec_batch_last_success_timestamp_seconds [1-9]`).Match(metrics) {
		t.Errorf("dev /metrics lacks the successful batch runs:\n%s", tail(string(metrics), 3000))
	}

	// A new session: its recommendations change within a second, from speed.
	// A noisy shared machine may stall one attempt; three are allowed.
	var fastest time.Duration = -1
	for attempt := range 3 {
		session := fmt.Sprintf("e2e-s2-%d", attempt)
		before := p.recommendations(t, url.Values{"user_id": {user}, "session_id": {session}, "k": {"10"}})
		if sources(before)["speed"] != 0 {
			t.Fatalf("a session without events has speed items: %+v", before.Items)
		}
		p.post(t, view("e2e-b"+session, user, session, popular[0], time.Now()))
		posted := time.Now()
		var after serving.Recommendations
		for time.Since(posted) < time.Second {
			after = p.recommendations(t, url.Values{"user_id": {user}, "session_id": {session}, "k": {"10"}})
			if sources(after)["speed"] > 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if sources(after)["speed"] > 0 {
			fastest = time.Since(posted)
			if after.AsOf.Speed == nil || after.AsOf.Speed.Scored != serving.ScoredRead {
				// dev stores only the sessions' inputs (speed.score_views:
				// false): speed items are scored at read.
				t.Fatalf("speed answer not scored at read: as_of %+v", after.AsOf)
			}
			break
		}
		t.Logf("attempt %d: no speed recommendations within 1s of the 202", attempt)
	}
	if fastest < 0 {
		t.Fatal("the new session's recommendations never came from the speed layer within one second")
	}
	t.Logf("speed recommendations visible %s after the 202", fastest.Round(time.Millisecond))
	p.stop(t)
	phase("stopped")
	checkLoopTrace(t, loopTrace)

	// Started again on the same data directory, it serves the same batch
	// (read back from Iceberg) before any new batch runs.
	p = startDev(t, bin, dataDir, httpAddr, kafkaAddr)
	phase("restarted")
	waitFor(t, 30*time.Second, "the previous batch after a restart", func() bool {
		r := p.recommendations(t, url.Values{"user_id": {user}, "k": {"10"}})
		return sources(r)["batch"] > 0
	})
	p.stop(t)
	if strings.Contains(p.stderr.String(), "level=ERROR") {
		t.Fatalf("errors logged:\n%s", tail(p.stderr.String(), 4000))
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", d, what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// checkLoopTrace checks the speed loop trace dev --speed-trace wrote: the
// header, then one line per loop iteration, some with records (the
// generator ran).
func checkLoopTrace(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if lines[0] != speed.LoopTraceHeader {
		t.Fatalf("loop trace starts with %q, want the header", lines[0])
	}
	recs := 0
	for _, ln := range lines[1:] {
		f := strings.Fields(ln)
		if len(f) != 14 || f[0] != "S" {
			t.Fatalf("loop trace line %q: want 14 fields starting with S", ln)
		}
		n, err := strconv.Atoi(f[5])
		if err != nil {
			t.Fatalf("loop trace line %q: %v", ln, err)
		}
		recs += n
	}
	if recs == 0 {
		t.Fatalf("loop trace of %d iterations without a record", len(lines)-1)
	}
}
