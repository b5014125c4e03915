package speed

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/schemas"
)

// The crash test runs the speed layer in a child process: this test binary
// re-executed with childEnv set. The child consumes from the parent's
// embedded broker (kfake over TCP), writes its real-time view to a file (an
// append-only log of upserts: the parent applies the store's rule, greatest
// offset wins) and, on SIGTERM, dumps its deltas and recommendations.
const (
	childEnv     = "LAMBDAREC_SPEED_CHILD"
	childBroker  = "LAMBDAREC_SPEED_CHILD_BROKER"
	childViews   = "LAMBDAREC_SPEED_CHILD_VIEWS"
	childDump    = "LAMBDAREC_SPEED_CHILD_DUMP"
	childBound   = "LAMBDAREC_SPEED_CHILD_BOUNDARY"
	childTopic   = "LAMBDAREC_SPEED_CHILD_TOPIC"
	childGroupV  = "LAMBDAREC_SPEED_CHILD_GROUP"
	childGroup   = "speed-crash"
	childMember  = "speed-0"
	childPollMax = 100
)

func TestMain(m *testing.M) {
	if os.Getenv(benchChildEnv) != "" {
		os.Exit(runBenchChild())
	}
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

// runChild is the child process's main.
func runChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	addr, topic := os.Getenv(childBroker), os.Getenv(childTopic)
	var bound model.Boundary
	if err := json.Unmarshal([]byte(os.Getenv(childBound)), &bound); err != nil {
		return fail(err)
	}
	p := model.DefaultParams()
	bm, err := recomputeFromKafka(ctx, addr, topic, bound, p)
	if err != nil {
		return fail(err)
	}
	batch := &Batch{Meta: store.BatchMeta{BatchID: "crash-batch", Boundary: bound}, Model: bm}
	views, err := openFileViews(os.Getenv(childViews))
	if err != nil {
		return fail(err)
	}
	defer views.Close()
	l, err := New(Config{
		Brokers:           []string{addr},
		Topic:             topic,
		Group:             os.Getenv(childGroupV),
		CommitInterval:    10 * time.Millisecond,
		BatchPollInterval: time.Hour,
		MaxPollRecords:    childPollMax,
		InstanceID:        childMember,
	}, Deps{Views: views, Batches: BatchSourceFunc(func(context.Context) (*Batch, error) { return batch, nil })})
	if err != nil {
		return fail(err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- l.Run(lctx) }()
	<-ctx.Done()
	d, err := dumpState(l)
	if err != nil {
		return fail(err)
	}
	b, _ := json.Marshal(d)
	if err := os.WriteFile(os.Getenv(childDump), b, 0o644); err != nil {
		return fail(err)
	}
	cancel()
	if err := <-done; err != nil {
		return fail(err)
	}
	return 0
}

// recomputeFromKafka is the batch a batch run over an archive with boundary
// bound computes: the model of the valid records at or below it, read from
// Kafka and decoded as the layer decodes them.
func recomputeFromKafka(ctx context.Context, addr, topic string, bound model.Boundary, p model.Params) (*model.Model, error) {
	b, err := model.NewBuilder(p)
	if err != nil {
		return nil, err
	}
	parts := map[int32]kgo.Offset{}
	for part, hi := range bound {
		if hi >= 0 {
			parts[part] = kgo.NewOffset().At(0)
		}
	}
	if len(parts) == 0 {
		return b.Build(), nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var ev schemas.UserInteraction
	for len(parts) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read events up to %v: %w", bound, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			hi := bound[r.Partition]
			if r.Offset > hi {
				return
			}
			if schemas.Decode(r.Value, &ev, r.Timestamp) == nil {
				b.Add(model.EventFromProto(&ev, r.Partition, r.Offset))
			}
			if r.Offset == hi {
				delete(parts, r.Partition)
			}
		})
	}
	return b.Build(), nil
}

// fileViews is a ViewWriter that appends every view written to a file, one
// JSON line each, in one write per call: what a store received survives the
// writer's SIGKILL.
type fileViews struct {
	mu sync.Mutex
	f  *os.File
}

// openFileViews opens the file at path for appending. A write the previous
// writer was killed in the middle of was never acknowledged: its torn tail
// (after the last newline) is cut off, as a store recovering from a crash
// drops an unfinished write, so the next views start on a line of their own.
func openFileViews(path string) (*fileViews, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 && b[len(b)-1] != '\n' {
		if err := os.Truncate(path, int64(bytes.LastIndexByte(b, '\n')+1)); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &fileViews{f: f}, nil
}

func (w *fileViews) UpsertSessions(_ context.Context, views []store.SessionView) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range views {
		if err := enc.Encode(&views[i]); err != nil {
			return err
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := w.f.Write(buf.Bytes())
	return err
}

func (w *fileViews) Close() error { return w.f.Close() }

// readFileViews applies the upserts logged in path with the store's rule
// (the greatest offset wins). When strict, a rewrite of a session at an
// offset already stored must carry the same view (replays are idempotent).
func readFileViews(t *testing.T, path string, strict bool) (map[string]store.SessionView, int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, 0
		}
		t.Fatal(err)
	}
	out := map[string]store.SessionView{}
	lines := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v store.SessionView
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			break // a torn last line
		}
		lines++
		old, ok := out[v.SessionID]
		switch {
		case !ok || store.Newer(&v, &old):
			out[v.SessionID] = v
		case strict && old.Offset == v.Offset && old.UpdatedAt.Equal(v.UpdatedAt) && !sameView(old, v, true):
			t.Fatalf("session %s rewritten at offset %d, same time, with a different view:\n%+v\n%+v", v.SessionID, v.Offset, old, v)
		}
	}
	return out, lines
}

// sameView compares views but for UpdatedAt (and Items unless withItems).
func sameView(a, b store.SessionView, withItems bool) bool {
	a.UpdatedAt, b.UpdatedAt = time.Time{}, time.Time{}
	a.EventTime, b.EventTime = a.EventTime.UTC(), b.EventTime.UTC()
	if !withItems {
		a.Items, b.Items = nil, nil
	}
	if len(a.Items) == 0 && len(b.Items) == 0 {
		a.Items, b.Items = nil, nil
	}
	if len(a.Purchased) == 0 && len(b.Purchased) == 0 {
		a.Purchased, b.Purchased = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

// stateDump is what a layer holds at a quiescent point: its deltas and the
// recommendations of its live sessions.
type stateDump struct {
	Pairs     []model.Pair
	Pop       []model.ItemCount
	Users     map[string][]model.UserItem
	Stats     model.Stats
	Recs      map[string][]model.Scored
	Positions map[int32]int64
}

func dumpState(l *Layer) (stateDump, error) {
	d, err := l.Deltas()
	if err != nil {
		return stateDump{}, err
	}
	out := stateDump{Pop: d.Popularity().All(), Stats: d.Stats, Users: map[string][]model.UserItem{}, Recs: map[string][]model.Scored{}, Positions: l.Positions()}
	for p := range d.Covisit().Pairs() {
		out.Pairs = append(out.Pairs, p)
	}
	slices.SortFunc(out.Pairs, func(a, b model.Pair) int { return strings.Compare(a.A+"\x00"+a.B, b.A+"\x00"+b.B) })
	for _, u := range d.Users().Users() {
		out.Users[u] = d.Users().Items(u)
	}
	for _, id := range l.LiveSessions() {
		recs, _ := l.Recommend(id, 20)
		out.Recs[id] = recs
	}
	return out, nil
}

// child is a running child process.
type child struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
}

func startChild(t *testing.T, tt *testTopic, views, dump string, bound model.Boundary) *child {
	t.Helper()
	bb, _ := json.Marshal(bound)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", childBroker+"="+tt.addr(), childViews+"="+views, childDump+"="+dump, childBound+"="+string(bb),
		childTopic+"="+tt.topic, childGroupV+"="+tt.group(childGroup))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stderr: &stderr}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("child stderr:\n%s", stderr.String())
		}
	})
	return c
}

// TestCrashConvergesToUninterruptedRun kills the speed process with SIGKILL
// mid-stream, restarts it, and checks that its real-time view converges to
// exactly what an uninterrupted run writes, and that its deltas and
// recommendations equal the uninterrupted run's (and the full recompute's).
//
// Views are exact when read (a view is scored again when a row it read
// changes), so once both runs consumed everything, every view is compared in
// full, scores included, whatever the partition count.
func TestCrashConvergesToUninterruptedRun(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) {
		for _, parts := range []int{1, 3} {
			t.Run(fmt.Sprintf("partitions%d", parts), func(t *testing.T) { crashRun(t, newTestTopicOn(t, kb, parts), parts) })
		}
	})
}

func crashRun(t *testing.T, tt *testTopic, parts int) {
	r := rand.New(rand.NewPCG(uint64(parts), 99))
	g := newStreamGen(r, time.Now().Add(-time.Hour))
	dir := t.TempDir()
	viewsPath, dumpPath := filepath.Join(dir, "views.jsonl"), filepath.Join(dir, "dump.json")

	tt.produce(g.batch(1500))
	bound := randomBoundary(r, nil, tt.endOffsets())
	for p := range bound { // cover every partition, so the batch matters everywhere
		bound[p] = max(bound[p], 0)
	}

	// Run, produce while it runs, SIGKILL it mid-stream.
	c1 := startChild(t, tt, viewsPath, dumpPath, bound)
	for i := range 6 {
		tt.produce(g.batch(250))
		if i == 2 {
			waitFor(t, 30*time.Second, "the child to write views", func() bool {
				_, n := readFileViews(t, viewsPath, false)
				return n > 200
			})
		}
	}
	if err := c1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c1.cmd.Wait()
	_, before := readFileViews(t, viewsPath, false)
	tt.produce(g.batch(500)) // while it is down

	// Restart; more records; wait until every session's view reflects its
	// newest record.
	c2 := startChild(t, tt, viewsPath, dumpPath, bound)
	tt.produce(g.batch(500))
	evs, _ := tt.decoded()
	lastOff := map[string]int64{}
	for _, e := range evs {
		lastOff[e.SessionID] = e.Offset
	}
	waitFor(t, 60*time.Second, "the restarted child's views to converge", func() bool {
		vs, _ := readFileViews(t, viewsPath, false)
		for id, off := range lastOff {
			if vs[id].Offset != off {
				return false
			}
		}
		return true
	})
	if err := c2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := c2.cmd.Wait(); err != nil {
		t.Fatalf("child exit: %v", err)
	}
	got, lines := readFileViews(t, viewsPath, parts == 1)
	t.Logf("%d view writes before the kill, %d in all, %d sessions", before, lines, len(got))

	// The uninterrupted run: the same batch, everything in one go.
	bm, err := recomputeFromKafka(context.Background(), tt.addr(), tt.topic, bound, model.DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{}
	src.publish(&Batch{Meta: store.BatchMeta{BatchID: "crash-batch", Boundary: bound}, Model: bm})
	refViews := store.NewMemory()
	ref := startLayer(t, tt, src, refViews, func(c *Config) { c.Group = "reference"; c.MaxPollRecords = 37 })
	waitOwned(t, tt, "crash-batch", ref)
	var diff string
	deadline := time.Now().Add(servedWait)
	for {
		diff = ""
		for id := range lastOff {
			want, ok, err := refViews.Session(context.Background(), id)
			if err != nil {
				t.Fatalf("reference view of %s: %v", id, err)
			}
			if !ok { // processed, its view not written yet (views are written a flush tick later)
				diff = fmt.Sprintf("session %s: the reference has no view", id)
				break
			}
			if !sameView(got[id], want, true) {
				diff = fmt.Sprintf("session %s: after the crash\n%+v\nuninterrupted\n%+v", id, got[id], want)
				break
			}
		}
		if diff == "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if diff != "" {
		t.Fatal(diff)
	}
	if len(got) != len(lastOff) {
		t.Fatalf("%d views after the crash, %d sessions", len(got), len(lastOff))
	}

	// Deltas and recommendations of the converged state.
	var gotDump stateDump
	b, err := os.ReadFile(dumpPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &gotDump); err != nil {
		t.Fatal(err)
	}
	wantDump, err := dumpState(ref)
	if err != nil {
		t.Fatal(err)
	}
	wb, _ := json.Marshal(wantDump)
	var want stateDump
	json.Unmarshal(wb, &want)
	if !reflect.DeepEqual(gotDump, want) {
		t.Fatalf("state after the crash differs from the uninterrupted run:\nstats %+v vs %+v, %d vs %d pairs, %d vs %d sessions",
			gotDump.Stats, want.Stats, len(gotDump.Pairs), len(want.Pairs), len(gotDump.Recs), len(want.Recs))
	}
	newChecker(t, tt).check("uninterrupted reference", bound, ref)
}
