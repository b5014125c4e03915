package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/schemas"
)

// The topology needs ClickHouse: .ci/run starts it (.ci/clickhouse.sh) and
// sets this variable; PostgreSQL's binaries and versitygw (a go tool) are
// found like the lakehouse and archive tests find them.
const envClickHouse = "LAMBDAREC_CLICKHOUSE_DSN"

// envReport names a file the test appends its figures to (CI prints it).
const envReport = "TOPOLOGY_REPORT"

// TestRollingRestarts runs the production topology (every role its own
// process on PostgreSQL, versitygw, ClickHouse and a Kafka broker), sends
// events at a steady rate through both serve replicas while reading from both,
// and restarts every role in turn: SIGTERM then start, SIGKILL then start.
// Nothing answered 202 is lost or doubled in Iceberg, no read gets a 5xx, both
// replicas agree once settled, and answers carry the batch and speed
// provenance.
func TestRollingRestarts(t *testing.T) {
	dsn := os.Getenv(envClickHouse)
	if dsn == "" {
		t.Skipf("%s is not set (.ci/run starts ClickHouse with .ci/clickhouse.sh and sets it)", envClickHouse)
	}
	began := time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "lambdarec-topology-")
	if err != nil {
		t.Fatal(err)
	}
	// PostgreSQL runs as its own user when the test runs as root: it must
	// reach its directory.
	os.Chmod(dir, 0o755)
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	bin := filepath.Join(dir, "lambdarec")
	build := exec.Command("go", "build", "-o", bin, "./cmd/lambdarec")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build lambdarec: %v\n%s", err, out)
	}
	var logBuf syncBuffer
	topo, err := Start(ctx, Options{
		Bin:           bin,
		ConfigDir:     filepath.Join(root, "infra", "local"),
		Dir:           dir,
		ClickHouseDSN: dsn,
		Kafka:         os.Getenv(EnvKafka),
		Log:           slog.New(slog.NewTextHandler(&logBuf, nil)),
	})
	if err != nil {
		t.Fatalf("start topology: %v (logs in %s)", err, dir)
	}
	defer func() {
		if err := topo.Close(); err != nil {
			t.Errorf("close topology: %v", err)
		}
		topo.DropClickHouse(context.Background())
		if t.Failed() {
			for _, r := range Roles {
				t.Logf("--- %s log tail:\n%s", r.Name, topo.LogTail(r.Name, 3000))
			}
			t.Logf("logs and data kept in %s", dir)
		}
	}()
	started := time.Since(began)
	kafka := "lambdarec broker (kfake)"
	if topo.opts.Kafka != "" {
		kafka = "Apache Kafka at " + topo.opts.Kafka
	}

	ld := newLoad()
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); ld.send(loadCtx, 100) }()
	go func() { defer wg.Done(); ld.read(loadCtx) }()

	// Let the first batch run so reads exercise the batch view too.
	time.Sleep(25 * time.Second)

	type restart struct {
		role, sig  string
		down, took time.Duration
		gap        time.Duration
	}
	var restarts []restart
	for _, r := range Roles {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
			t0 := time.Now()
			if err := topo.StopRole(r.Name, sig); err != nil {
				t.Errorf("stop %s with %s: %v", r.Name, sig, err)
			}
			down := time.Since(t0)
			if err := topo.StartRole(ctx, r.Name); err != nil {
				stopLoad()
				wg.Wait()
				t.Fatalf("restart %s after %s: %v", r.Name, sig, err)
			}
			// Keep the load on a little after the role is back.
			time.Sleep(2 * time.Second)
			restarts = append(restarts, restart{r.Name, sigName(sig), down, time.Since(t0), ld.longestGap(t0, time.Now())})
		}
	}
	time.Sleep(3 * time.Second)
	stopLoad()
	wg.Wait()

	if n := ld.fiveXX.Load(); n > 0 {
		t.Errorf("%d reads got a 5xx; first: %s", n, ld.firstFail())
	}
	if ld.reads.Load() == 0 || len(ld.accepted) == 0 {
		t.Fatalf("no load: %d reads, %d events accepted", ld.reads.Load(), len(ld.accepted))
	}

	// Nothing accepted is lost or doubled: every event answered 202 is one
	// row of the events table, by event id.
	env := map[string]string{}
	for _, kv := range topo.Env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_EC2_METADATA_DISABLED"} {
		t.Setenv(k, env[k])
	}
	cfg, err := config.Load(filepath.Join(root, "infra", "local", "archive.yml"), nil)
	if err != nil {
		t.Fatal(err)
	}
	lake, err := lakehouse.Open(ctx, cfg.Iceberg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Close()
	var rows map[string]int
	settleStart := time.Now()
	for {
		rows = archivedIDs(t, ctx, lake)
		missing := 0
		for id := range ld.accepted {
			if rows[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Since(settleStart) > 2*time.Minute {
			t.Fatalf("%d of %d accepted events are not in Iceberg 2 minutes after the load stopped", missing, len(ld.accepted))
		}
		time.Sleep(2 * time.Second)
	}
	for id, n := range rows {
		if n > 1 {
			t.Errorf("event %s is archived %d times", id, n)
		}
	}

	// Both replicas agree once settled, and carry batch provenance.
	var agreeErr error
	sessions := ld.sessionIDs()
	for deadline := time.Now().Add(90 * time.Second); ; {
		agreeErr = agree(sessions)
		if agreeErr == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	if agreeErr != nil {
		t.Errorf("replicas disagree 90s after the load stopped: %v", agreeErr)
	}

	// Speed provenance: a fresh session's events show up on both replicas
	// as speed items with the speed layer's as_of.
	fresh := fmt.Sprintf("s-final-%d", time.Now().UnixNano())
	evs := []map[string]any{}
	for i, item := range []string{"i00001", "i00002", "i00003"} {
		evs = append(evs, event(fmt.Sprintf("final-%d-%d", time.Now().UnixNano(), i), "u-final", fresh, item))
	}
	if code, err := post(ServeURLs[0], evs); err != nil || code != http.StatusAccepted {
		t.Fatalf("post final events: %d %v", code, err)
	}
	for _, u := range ServeURLs {
		var last recommendations
		ok := false
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			last, err = recommend(u, fresh)
			if err == nil && last.AsOf.Speed != nil && slices.ContainsFunc(last.Items, func(it item) bool { return it.Source == "speed" }) && last.AsOf.Batch != nil && last.AsOf.Batch.BatchID != "" {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("%s: no speed items with speed and batch as_of for a fresh session: %+v %v", u, last, err)
		}
	}

	// Every role carries its build on /metrics.
	for _, u := range []string{ServeURLs[0] + "/metrics", ServeURLs[1] + "/metrics", "http://127.0.0.1:19465/metrics",
		"http://127.0.0.1:19466/metrics", "http://127.0.0.1:19467/metrics"} {
		resp, err := client.Get(u)
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "lambdarec_build_info{") {
			t.Errorf("%s: no lambdarec_build_info", u)
		}
	}

	// The figures the issue asks for.
	var b strings.Builder
	fmt.Fprintf(&b, "rolling restarts: kafka %s; topology up in %s; wall time %s\n", kafka, started.Round(time.Millisecond), time.Since(began).Round(time.Second))
	fmt.Fprintf(&b, "events sent %d, accepted (202) %d, archived rows %d; reads made %d (5xx %d, connection refused then failed over %d)\n",
		ld.sent.Load(), len(ld.accepted), len(rows), ld.reads.Load(), ld.fiveXX.Load(), ld.failovers.Load())
	fmt.Fprintf(&b, "%-8s %-8s %10s %10s %18s\n", "role", "signal", "stopped in", "back in", "longest read gap")
	for _, r := range restarts {
		fmt.Fprintf(&b, "%-8s %-8s %10s %10s %18s\n", r.role, r.sig, r.down.Round(time.Millisecond), r.took.Round(time.Millisecond), r.gap.Round(time.Millisecond))
	}
	t.Log("\n" + b.String())
	if p := os.Getenv(envReport); p != "" {
		if f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			f.WriteString(b.String())
			f.Close()
		}
	}
}

func sigName(s syscall.Signal) string {
	if s == syscall.SIGKILL {
		return "SIGKILL"
	}
	return "SIGTERM"
}

// load sends events and reads recommendations through both replicas.
type load struct {
	sent, reads, fiveXX, failovers atomic.Int64

	mu       sync.Mutex
	accepted map[string]bool
	sessions map[string]bool
	okReads  []time.Time
	fail     string
}

func newLoad() *load {
	return &load{accepted: map[string]bool{}, sessions: map[string]bool{}}
}

var client = &http.Client{Timeout: 10 * time.Second}

func event(id, user, session, itemID string) map[string]any {
	return map[string]any{
		"event_id": id, "timestamp": time.Now().UTC().Format(time.RFC3339Nano),
		"user_id": user, "session_id": session,
		"product_click": map[string]any{"item_id": itemID, "category": "cat-001"},
	}
}

func post(base string, evs []map[string]any) (int, error) {
	body, _ := json.Marshal(evs)
	resp, err := client.Post(base+"/v1/events", "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// send posts batches of 5 events at rate events/s, alternating replicas and
// failing over when a replica refuses the connection (never delivered). An
// event is attempted once: only a 202 counts it as accepted.
func (l *load) send(ctx context.Context, rate int) {
	tick := time.NewTicker(time.Second * 5 / time.Duration(rate))
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var evs []map[string]any
		var ids []string
		session := fmt.Sprintf("s%03d", n%40)
		for i := range 5 {
			id := fmt.Sprintf("e-%d-%d", n, i)
			// Sessions walk a small catalog, so items co-occur.
			item := fmt.Sprintf("i%05d", 1+(n*3+i)%60)
			evs = append(evs, event(id, "u"+session, session, item))
			ids = append(ids, id)
		}
		l.sent.Add(int64(len(evs)))
		for try := range 2 {
			code, err := post(ServeURLs[(n+try)%2], evs)
			if err != nil && isRefused(err) {
				l.failovers.Add(1)
				continue
			}
			if code == http.StatusAccepted {
				l.mu.Lock()
				for _, id := range ids {
					l.accepted[id] = true
				}
				l.sessions[session] = true
				l.mu.Unlock()
			}
			break
		}
	}
}

func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || strings.Contains(err.Error(), "connection refused")
}

// read asks for recommendations continuously, alternating replicas and
// failing over when one refuses the connection; a 5xx is a failure.
func (l *load) read(ctx context.Context) {
	for n := 0; ctx.Err() == nil; n++ {
		session := fmt.Sprintf("s%03d", n%40)
		for try := range 2 {
			u := ServeURLs[(n+try)%2]
			resp, err := client.Get(u + "/v1/recommendations?user_id=u" + session + "&session_id=" + session + "&k=10")
			l.reads.Add(1)
			if err != nil {
				if isRefused(err) {
					l.failovers.Add(1)
					continue
				}
				l.failRead(fmt.Sprintf("%s: %v", u, err))
				break
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				l.fiveXX.Add(1)
				l.failRead(fmt.Sprintf("%s: %d %s", u, resp.StatusCode, body))
				break
			}
			if resp.StatusCode == http.StatusOK {
				l.mu.Lock()
				l.okReads = append(l.okReads, time.Now())
				l.mu.Unlock()
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *load) failRead(s string) {
	l.mu.Lock()
	if l.fail == "" {
		l.fail = s
	}
	l.mu.Unlock()
}

func (l *load) firstFail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fail
}

// longestGap is the longest time without a successful read in [from, to].
func (l *load) longestGap(from, to time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev, gap := from, time.Duration(0)
	for _, at := range l.okReads {
		if at.Before(from) {
			continue
		}
		if at.After(to) {
			break
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return max(gap, to.Sub(prev))
}

func (l *load) sessionIDs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s []string
	for id := range l.sessions {
		s = append(s, id)
	}
	slices.Sort(s)
	return s
}

type item struct {
	Item   string  `json:"item"`
	Score  float64 `json:"score"`
	Source string  `json:"source"`
}

type recommendations struct {
	Items []item `json:"items"`
	AsOf  struct {
		Batch *struct {
			BatchID string `json:"batch_id"`
		} `json:"batch"`
		Speed *struct {
			Offset int64 `json:"offset"`
		} `json:"speed"`
	} `json:"as_of"`
}

func recommend(base, session string) (recommendations, error) {
	var r recommendations
	resp, err := client.Get(base + "/v1/recommendations?user_id=u" + session + "&session_id=" + session + "&k=10")
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("%s: %d %s", base, resp.StatusCode, body)
	}
	return r, json.Unmarshal(body, &r)
}

// agree compares both replicas' answers for every session: the same items,
// scores and sources, the same batch, and a batch served at all.
func agree(sessions []string) error {
	for _, s := range sessions {
		a, err := recommend(ServeURLs[0], s)
		if err != nil {
			return err
		}
		b, err := recommend(ServeURLs[1], s)
		if err != nil {
			return err
		}
		if a.AsOf.Batch == nil || a.AsOf.Batch.BatchID == "" {
			return fmt.Errorf("session %s: no batch provenance in %+v", s, a)
		}
		if b.AsOf.Batch == nil || a.AsOf.Batch.BatchID != b.AsOf.Batch.BatchID {
			return fmt.Errorf("session %s: batch %+v vs %+v", s, a.AsOf.Batch, b.AsOf.Batch)
		}
		if !slices.Equal(a.Items, b.Items) {
			return fmt.Errorf("session %s: %+v vs %+v", s, a.Items, b.Items)
		}
		if len(a.Items) == 0 {
			return fmt.Errorf("session %s: no items", s)
		}
	}
	return nil
}

// archivedIDs counts the rows of the events table by event id.
func archivedIDs(t *testing.T, ctx context.Context, lake *lakehouse.Lakehouse) map[string]int {
	t.Helper()
	rows := map[string]int{}
	tbl, err := lake.LoadTable(ctx, lakehouse.EventsTable)
	if err != nil {
		return rows // not created yet
	}
	if tbl.CurrentSnapshot() == nil {
		return rows
	}
	_, recs, err := lakehouse.ScanSnapshot(ctx, tbl, tbl.CurrentSnapshot(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for rec, err := range recs {
		if err != nil {
			t.Fatal(err)
		}
		r, err := schemas.NewEventReader(rec)
		if err != nil {
			t.Fatal(err)
		}
		for i := range r.Len() {
			ev := &schemas.UserInteraction{}
			if _, err := r.Read(i, ev); err != nil {
				t.Fatal(err)
			}
			rows[ev.GetEventId()]++
		}
		rec.Release()
	}
	return rows
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
