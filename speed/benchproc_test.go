package speed

// BenchmarkLatency's process layout (bench_test.go): the broker and the
// producer run either in a child process (the default, as in production,
// where they are other processes on the same machine) or in the measured
// process (SPEED_BENCH_BROKER=inproc, the layout up to session 11). The
// child is this test binary re-executed with benchChildEnv set (TestMain,
// crash_test.go): it starts the embedded broker (kfake over TCP), generates
// the stream, produces it at the rate when told to, and keeps the send
// times in a pointer-free slice that it writes to a file after the
// measured window. Send times cross the process boundary as wall-clock
// Unix nanoseconds (one machine, one clock).
//
// The protocol, one line each way on the child's stdin and stdout:
//
//	child:  ready ADDR TOPIC
//	parent: go                        (the measured window begins)
//	child:  sent N START_NS DUR_NS P:END,P:END,…
//	parent: cpu                       (the layer has caught up)
//	child:  cpu CPU_NS                (its user+system CPU since "go")
//	child:  written                   (the sends file is complete)
//	parent: exit                      (after the layer has stopped)
//
// The child exits when its stdin closes, so a parent that dies leaves no
// broker behind.

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	rtmetrics "runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/broker"
	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/store"
)

// The child's environment (child-only variables).
const (
	benchChildEnv   = "LAMBDAREC_SPEED_CHILD_BENCH"       // "1": run as the latency benchmark's broker and producer
	benchChildRate  = "LAMBDAREC_SPEED_CHILD_BENCH_RATE"  // events per second
	benchChildN     = "LAMBDAREC_SPEED_CHILD_BENCH_N"     // records to produce
	benchChildSends = "LAMBDAREC_SPEED_CHILD_BENCH_SENDS" // the sends file
	benchChildStart = "LAMBDAREC_SPEED_CHILD_BENCH_START" // "fill": the stream's start, Unix ns
)

// benchSend is a produced record: where it landed, when it was produced
// (Unix ns, before the produce call) and its key's hash (keys are session
// ids; sessionHash). Pointer-free, so the GC never scans a slice of them.
type benchSend struct {
	part int32
	off  int64
	at   int64
	key  uint64
}

// viewWrite is a session view that became visible in the store: its
// session's hash, its offset and when (Unix ns). Pointer-free.
type viewWrite struct {
	key    uint64
	offset int64
	at     int64
}

// sessionHash is the 64-bit FNV-1a hash of a session id, computed without
// allocating: the benchmark matches sends and view writes by it instead of
// keeping a string per record (a collision among the ~10^5 sessions of a
// run has a probability of ~10^-9).
func sessionHash[T string | []byte](s T) uint64 {
	h := uint64(14695981039346656037)
	for i := range len(s) {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// produceAt produces recs at rate events per second (paced every
// millisecond) with cl, which must use the manual partitioner on a fresh
// topic, and returns every send, in recs' order, once every record is
// acknowledged. Send times are taken before each produce call. It
// allocates nothing per record once warm: the records are reused after
// their promise, and the sends are one preallocated slice.
func produceAt(cl *kgo.Client, recs []benchRecord, rate int) (sends []benchSend, start time.Time, sendDur time.Duration, err error) {
	sends = make([]benchSend, len(recs))
	var (
		mu   sync.Mutex
		free []*kgo.Record
		errs error
		wg   sync.WaitGroup
		// acked counts each partition's acknowledgements: on a fresh topic
		// the k-th record produced to a partition must land at offset k.
		acked [benchParts]int64
	)
	promise := func(r *kgo.Record, err error) {
		defer wg.Done()
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
			errs = errors.Join(errs, err)
		case r.Offset != acked[r.Partition]:
			errs = errors.Join(errs, fmt.Errorf("partition %d: record acknowledged at offset %d, want %d", r.Partition, r.Offset, acked[r.Partition]))
		}
		acked[r.Partition]++
		free = append(free, r)
	}
	start = time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for i := 0; i < len(recs); {
		now := <-tick.C
		due := min(int(float64(now.Sub(start))/float64(time.Second)*float64(rate)), len(recs))
		for ; i < due; i++ {
			br := &recs[i]
			mu.Lock()
			var r *kgo.Record
			if n := len(free); n > 0 {
				r, free = free[n-1], free[:n-1]
			}
			mu.Unlock()
			if r == nil {
				r = new(kgo.Record)
			}
			*r = kgo.Record{Partition: br.part, Key: br.key, Value: br.value}
			sends[i] = benchSend{part: br.part, off: br.off, at: time.Now().UnixNano(), key: sessionHash(br.key)}
			wg.Add(1)
			cl.Produce(context.Background(), r, promise)
		}
	}
	sendDur = time.Since(start)
	wg.Wait()
	return sends, start, sendDur, errs
}

// sendEnds returns each partition's end offset after sends.
func sendEnds(sends []benchSend) map[int32]int64 {
	ends := map[int32]int64{}
	for _, s := range sends {
		ends[s.part] = max(ends[s.part], s.off+1)
	}
	return ends
}

// firstWrites returns, for each send, when the first write of its
// session's view at or past its offset became visible (Unix ns), 0 if none
// did. A session's writes are in the order they were made, so their offsets
// and times do not decrease: sorted by (session, offset, time), the first
// write at or past (session, offset) is the answer, found by one binary
// search per send. writes is sorted in place.
func firstWrites(sends []benchSend, writes []viewWrite) []int64 {
	slices.SortFunc(writes, func(a, b viewWrite) int {
		return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.offset, b.offset), cmp.Compare(a.at, b.at))
	})
	out := make([]int64, len(sends))
	for i, s := range sends {
		k, _ := slices.BinarySearchFunc(writes, s, func(w viewWrite, s benchSend) int {
			return cmp.Or(cmp.Compare(w.key, s.key), cmp.Compare(w.offset, s.off))
		})
		if k < len(writes) && writes[k].key == s.key {
			out[i] = writes[k].at
		}
	}
	return out
}

// latencyChunk is how many view writes latencyWriter holds before it
// appends them to its file: 384 KiB, so the harness's bookkeeping adds a
// constant, small amount to the measured process's heap however long the
// run (a growing slice of every write would raise the GC's heap goal and
// so space its cycles further apart than the layer alone would).
const latencyChunk = 16 << 10

const viewWriteSize = 24

// latencyWriter is the in-process store that records when each session view
// became visible in it. With a file (newLatencyWriter) it records every
// write; without, it only counts them.
type latencyWriter struct {
	*store.Memory
	mu    sync.Mutex
	n     int
	buf   []viewWrite
	enc   []byte
	spill *os.File
	err   error
}

// newLatencyWriter records every view write, spilling to a file in dir.
func newLatencyWriter(tb testing.TB, dir string) *latencyWriter {
	tb.Helper()
	f, err := os.CreateTemp(dir, "view-writes-*")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return &latencyWriter{Memory: store.NewMemory(), buf: make([]viewWrite, 0, latencyChunk), enc: make([]byte, 0, latencyChunk*viewWriteSize), spill: f}
}

func (w *latencyWriter) UpsertSessions(ctx context.Context, vs []store.SessionView) error {
	if err := w.Memory.UpsertSessions(ctx, vs); err != nil {
		return err
	}
	now := time.Now().UnixNano()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n += len(vs)
	if w.spill == nil {
		return nil
	}
	for i := range vs {
		if len(w.buf) == cap(w.buf) {
			w.flush()
		}
		w.buf = append(w.buf, viewWrite{sessionHash(vs[i].SessionID), vs[i].Offset, now})
	}
	return nil
}

// flush appends the held writes to the file; w.mu held.
func (w *latencyWriter) flush() {
	b := w.enc[:0]
	for _, v := range w.buf {
		b = binary.LittleEndian.AppendUint64(b, v.key)
		b = binary.LittleEndian.AppendUint64(b, uint64(v.offset))
		b = binary.LittleEndian.AppendUint64(b, uint64(v.at))
	}
	if _, err := w.spill.Write(b); err != nil && w.err == nil {
		w.err = err
	}
	w.buf = w.buf[:0]
}

// count is the number of views written.
func (w *latencyWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// all returns every view write recorded, in the order they were made.
func (w *latencyWriter) all() ([]viewWrite, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.spill == nil {
		return nil, errors.New("latencyWriter: writes not recorded")
	}
	w.flush()
	if w.err != nil {
		return nil, w.err
	}
	raw, err := os.ReadFile(w.spill.Name())
	if err != nil {
		return nil, err
	}
	if len(raw) != w.n*viewWriteSize {
		return nil, fmt.Errorf("latencyWriter: %d bytes for %d writes", len(raw), w.n)
	}
	out := make([]viewWrite, w.n)
	for i := range out {
		b := raw[i*viewWriteSize:]
		out[i] = viewWrite{binary.LittleEndian.Uint64(b), int64(binary.LittleEndian.Uint64(b[8:])), int64(binary.LittleEndian.Uint64(b[16:]))}
	}
	return out, nil
}

const benchSendSize = 28

// writeSends writes sends to w: 4 + 8 + 8 + 8 bytes each, little-endian.
func writeSends(w io.Writer, sends []benchSend) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	var b [benchSendSize]byte
	for _, s := range sends {
		binary.LittleEndian.PutUint32(b[:], uint32(s.part))
		binary.LittleEndian.PutUint64(b[4:], uint64(s.off))
		binary.LittleEndian.PutUint64(b[12:], uint64(s.at))
		binary.LittleEndian.PutUint64(b[20:], s.key)
		if _, err := bw.Write(b[:]); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// readSends reads what writeSends wrote.
func readSends(raw []byte) ([]benchSend, error) {
	if len(raw)%benchSendSize != 0 {
		return nil, fmt.Errorf("sends file of %d bytes: not a multiple of %d", len(raw), benchSendSize)
	}
	out := make([]benchSend, len(raw)/benchSendSize)
	for i := range out {
		b := raw[i*benchSendSize:]
		out[i] = benchSend{int32(binary.LittleEndian.Uint32(b)), int64(binary.LittleEndian.Uint64(b[4:])),
			int64(binary.LittleEndian.Uint64(b[12:])), binary.LittleEndian.Uint64(b[20:])}
	}
	return out, nil
}

// latencySource is where BenchmarkLatency's records come from: a broker
// and a producer, in this process or in a child.
type latencySource interface {
	// topic is the topic the layer consumes.
	topic() *testTopic
	// produce produces the stream at the rate and returns once every record
	// is acknowledged: each partition's end, how many were sent, when the
	// first was and how long sending took.
	produce() (ends map[int32]int64, n int, start time.Time, sendDur time.Duration)
	// cpu is the CPU time the source used since produce began outside this
	// process (0 in this process: processCPU counts it).
	cpu() time.Duration
	// sends returns every send, after the measured window.
	sends() []benchSend
	// close ends the source once the layer has stopped.
	close()
}

// benchLayout is SPEED_BENCH_BROKER: "child" (default) or "inproc".
func benchLayout(b *testing.B) string {
	switch v := os.Getenv("SPEED_BENCH_BROKER"); v {
	case "", "child":
		return "child"
	case "inproc":
		return "inproc"
	default:
		b.Fatalf("SPEED_BENCH_BROKER=%q: want child or inproc", v)
		return ""
	}
}

// inprocSource is the broker and producer in the measured process.
type inprocSource struct {
	b    *testing.B
	tt   *testTopic
	recs []benchRecord
	rate int
	sent []benchSend
}

func newInprocSource(b *testing.B, rate, n int) *inprocSource {
	setComponent("generator")
	recs := genStream(b, n, time.Now(), float64(rate))
	setComponent("broker")
	return &inprocSource{b: b, tt: newTestTopic(b, benchParts), recs: recs, rate: rate}
}

func (s *inprocSource) topic() *testTopic { return s.tt }

func (s *inprocSource) produce() (map[int32]int64, int, time.Time, time.Duration) {
	setComponent("producer")
	prod, err := kgo.NewClient(kgo.SeedBrokers(s.tt.addr()), kgo.ProducerLinger(0), kgo.DefaultProduceTopic(s.tt.topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		s.b.Fatal(err)
	}
	defer prod.Close()
	sends, start, dur, err := produceAt(prod, s.recs, s.rate)
	if err != nil {
		s.b.Fatal(err)
	}
	s.sent = sends
	return sendEnds(sends), len(sends), start, dur
}

func (s *inprocSource) cpu() time.Duration { return 0 }
func (s *inprocSource) sends() []benchSend { return s.sent }
func (s *inprocSource) close()             {}

// childSource is the broker and producer in a child process.
type childSource struct {
	b         testing.TB
	cmd       *exec.Cmd
	in        io.WriteCloser
	out       *bufio.Scanner
	sendsPath string
	tt        *testTopic
	waited    bool
}

func newChildSource(b testing.TB, rate, n int) *childSource {
	b.Helper()
	path := filepath.Join(b.TempDir(), "sends")
	s := startBenchChild(b, benchChildEnv+"=1", benchChildRate+"="+strconv.Itoa(rate), benchChildN+"="+strconv.Itoa(n), benchChildSends+"="+path)
	s.sendsPath = path
	f := s.expect("ready", 2)
	s.tt = &testTopic{t: b, kb: &kafkatest.Broker{Name: "kfake-child", Brokers: []string{f[0]}}, topic: f[1], ends: map[int32]int64{}, nParts: benchParts}
	return s
}

// newFillChild starts a child (BenchmarkThroughput's) whose broker holds
// genRecords(n, start, 100) in a topic, produced before it answers.
func newFillChild(b testing.TB, n int, start time.Time) *childSource {
	b.Helper()
	s := startBenchChild(b, benchChildEnv+"=fill", benchChildN+"="+strconv.Itoa(n), benchChildStart+"="+strconv.FormatInt(start.UnixNano(), 10))
	f := s.expect("ready", 3)
	ends, err := parseEnds(f[2])
	if err != nil {
		b.Fatalf("benchmark child: ready %q: %v", f, err)
	}
	s.tt = &testTopic{t: b, kb: &kafkatest.Broker{Name: "kfake-child", Brokers: []string{f[0]}}, topic: f[1], ends: ends, nParts: benchParts}
	return s
}

// startBenchChild starts this test binary as a benchmark child with env added.
func startBenchChild(b testing.TB, env ...string) *childSource {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// Without GODEBUG: the child's gctrace lines would mix with the
	// measured process's on the same stderr.
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GODEBUG=") }), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	s := &childSource{b: b, cmd: cmd, in: in, out: bufio.NewScanner(out)}
	b.Cleanup(func() {
		if !s.waited {
			in.Close()
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return s
}

// parseEnds parses "P:END,P:END,…".
func parseEnds(v string) (map[int32]int64, error) {
	ends := map[int32]int64{}
	for pe := range strings.SplitSeq(v, ",") {
		p, e, ok := strings.Cut(pe, ":")
		pi, errP := strconv.Atoi(p)
		ei, errE := strconv.ParseInt(e, 10, 64)
		if !ok || errP != nil || errE != nil {
			return nil, fmt.Errorf("end %q", pe)
		}
		ends[int32(pi)] = ei
	}
	return ends, nil
}

// formatEnds is what parseEnds parses.
func formatEnds(ends map[int32]int64) string {
	var out []string
	for p, e := range ends {
		out = append(out, fmt.Sprintf("%d:%d", p, e))
	}
	return strings.Join(out, ",")
}

// expect reads the child's next line, which must be word and n fields.
func (s *childSource) expect(word string, n int) []string {
	s.b.Helper()
	if !s.out.Scan() {
		s.b.Fatalf("benchmark child: no %q line: %v", word, s.out.Err())
	}
	f := strings.Fields(s.out.Text())
	if len(f) != n+1 || f[0] != word {
		s.b.Fatalf("benchmark child: %q, want %q and %d fields", s.out.Text(), word, n)
	}
	return f[1:]
}

func (s *childSource) say(line string) {
	s.b.Helper()
	if _, err := io.WriteString(s.in, line+"\n"); err != nil {
		s.b.Fatalf("benchmark child: %v", err)
	}
}

func (s *childSource) topic() *testTopic { return s.tt }

func (s *childSource) produce() (map[int32]int64, int, time.Time, time.Duration) {
	s.say("go")
	f := s.expect("sent", 4)
	n, err1 := strconv.Atoi(f[0])
	startNs, err2 := strconv.ParseInt(f[1], 10, 64)
	dur, err3 := strconv.ParseInt(f[2], 10, 64)
	ends, err4 := parseEnds(f[3])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		s.b.Fatalf("benchmark child: sent %q: %v", f, err)
	}
	return ends, n, time.Unix(0, startNs), time.Duration(dur)
}

// cpuTotal is a fill child's CPU since it started.
func (s *childSource) cpuTotal() time.Duration { return s.cpu() }

func (s *childSource) cpu() time.Duration {
	s.say("cpu")
	ns, err := strconv.ParseInt(s.expect("cpu", 1)[0], 10, 64)
	if err != nil {
		s.b.Fatal(err)
	}
	return time.Duration(ns)
}

func (s *childSource) sends() []benchSend {
	s.expect("written", 0)
	raw, err := os.ReadFile(s.sendsPath)
	if err != nil {
		s.b.Fatal(err)
	}
	sends, err := readSends(raw)
	if err != nil {
		s.b.Fatal(err)
	}
	os.Remove(s.sendsPath)
	return sends
}

func (s *childSource) close() {
	s.say("exit")
	s.in.Close()
	s.waited = true
	if err := s.cmd.Wait(); err != nil {
		s.b.Errorf("benchmark child: %v", err)
	}
}

// runBenchChild is the child's main: the broker and the producer of
// BenchmarkLatency (the protocol above).
func runBenchChild() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "benchmark child:", err)
		return 1
	}
	if os.Getenv(benchChildEnv) == "fill" {
		if err := runFillChild(); err != nil {
			return fail(err)
		}
		return 0
	}
	rate, err1 := strconv.Atoi(os.Getenv(benchChildRate))
	n, err2 := strconv.Atoi(os.Getenv(benchChildN))
	if err := errors.Join(err1, err2); err != nil {
		return fail(err)
	}
	const topic = "events.bench"
	bk, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Partitions: benchParts, Topics: []string{topic}}, slog.New(slog.DiscardHandler))
	if err != nil {
		return fail(err)
	}
	defer bk.Close()
	recs, err := genRecords(n, time.Now(), float64(rate))
	if err != nil {
		return fail(err)
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(bk.Addr()), kgo.ProducerLinger(0), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return fail(err)
	}
	defer prod.Close()
	in := bufio.NewScanner(os.Stdin)
	next := func(want string) error {
		if !in.Scan() {
			return fmt.Errorf("stdin closed waiting for %q", want)
		}
		if in.Text() != want {
			return fmt.Errorf("got %q, want %q", in.Text(), want)
		}
		return nil
	}
	fmt.Printf("ready %s %s\n", bk.Addr(), topic)
	if err := next("go"); err != nil {
		return fail(err)
	}
	cpu0 := selfCPU()
	sends, start, dur, err := produceAt(prod, recs, rate)
	if err != nil {
		return fail(err)
	}
	fmt.Printf("sent %d %d %d %s\n", len(sends), start.UnixNano(), dur.Nanoseconds(), formatEnds(sendEnds(sends)))
	if err := next("cpu"); err != nil {
		return fail(err)
	}
	fmt.Printf("cpu %d\n", (selfCPU() - cpu0).Nanoseconds())
	f, err := os.Create(os.Getenv(benchChildSends))
	if err != nil {
		return fail(err)
	}
	if err := errors.Join(writeSends(f, sends), f.Close()); err != nil {
		return fail(err)
	}
	fmt.Println("written")
	// The broker serves until the layer has stopped.
	if err := next("exit"); err != nil {
		return fail(err)
	}
	return 0
}

// runFillChild is BenchmarkThroughput's child: a broker holding the
// stream, produced before "ready ADDR TOPIC ENDS"; then each "cpu" is
// answered with "cpu CPU_NS", its user+system CPU since it started, until
// "exit".
func runFillChild() error {
	n, err1 := strconv.Atoi(os.Getenv(benchChildN))
	startNs, err2 := strconv.ParseInt(os.Getenv(benchChildStart), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	const topic = "events.bench"
	bk, err := broker.New(broker.Config{Addr: "127.0.0.1:0", Partitions: benchParts, Topics: []string{topic}}, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer bk.Close()
	recs, err := genRecords(n, time.Unix(0, startNs), 100)
	if err != nil {
		return err
	}
	prod, err := kgo.NewClient(kgo.SeedBrokers(bk.Addr()), kgo.ProducerLinger(0), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return err
	}
	// All at once: produceAt checks each record landed where generated.
	sends, _, _, err := produceAt(prod, recs, 1<<30)
	if err != nil {
		return err
	}
	ends := sendEnds(sends)
	prod.Close()
	recs, sends = nil, nil
	fmt.Printf("ready %s %s %s\n", bk.Addr(), topic, formatEnds(ends))
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "cpu":
			fmt.Printf("cpu %d\n", selfCPU().Nanoseconds())
		case "exit":
			return nil
		default:
			return fmt.Errorf("got %q, want cpu or exit", in.Text())
		}
	}
	return errors.New("stdin closed waiting for exit")
}

// selfCPU is the process's user and system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// gcStats are the measured process's GC figures at one moment
// (runtime/metrics, read without stopping the world): cycles completed,
// the GC's estimated CPU time, the live heap (the marked heap of the last
// cycle) and the heap objects and bytes allocated so far.
type gcStats struct {
	cycles     uint64
	gcCPU      float64 // seconds
	live       uint64  // bytes
	allocs     uint64  // objects
	allocBytes uint64
}

func readGCStats() gcStats {
	s := []rtmetrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/gc/heap/live:bytes"},
		{Name: "/gc/heap/allocs:objects"}, {Name: "/gc/heap/allocs:bytes"}}
	rtmetrics.Read(s)
	return gcStats{s[0].Value.Uint64(), s[1].Value.Float64(), s[2].Value.Uint64(), s[3].Value.Uint64(), s[4].Value.Uint64()}
}
