package archive

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/obs"
)

// The crash test re-executes this test binary as the archiver: TestMain
// runs it instead of the tests when childConfigEnv names a configuration
// file. The variables are not LAMBDAREC_… ones, which the configuration
// would reject as unknown keys.
const (
	childConfigEnv = "ARCHIVE_TEST_CHILD_CONFIG"
	// childCrashEnv names a flush phase; the child then SIGKILLs itself at
	// that phase with probability 1/4 each time it gets there.
	childCrashEnv = "ARCHIVE_TEST_CHILD_CRASH_AT"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(childConfigEnv); path != "" {
		os.Exit(runChild(path, os.Getenv(childCrashEnv)))
	}
	os.Exit(m.Run())
}

// runChild is the archiver process of the crash test.
func runChild(configPath, crashAt string) int {
	cfg, err := config.Load(configPath, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	log, _ := obs.NewLogger(os.Stderr, "info", "text")
	if crashAt != "" {
		testHook = func(phase string) {
			if phase == crashAt && rand.IntN(4) == 0 {
				log.Info("child crashing", "phase", phase)
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {} // wait for the signal
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	a, err := New(cfg, Deps{Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// TestArchiveSurvivesSIGKILL runs the archiver as a child process and kills
// it with SIGKILL, at random moments and inside flushes (after the DLQ is
// acknowledged, after data files are written, right after a commit), while
// the stream keeps coming; then lets a last child catch up. Every valid
// record must be in the table exactly once, and every invalid one in the DLQ
// exactly once (its dead letter is never sent again by a restarted child).
func TestArchiveSurvivesSIGKILL(t *testing.T) {
	kafkatest.Run(t, func(t *testing.T, kb *kafkatest.Broker) { archiveSurvivesSIGKILL(t, startKafka(t, kb)) })
}

func archiveSurvivesSIGKILL(t *testing.T, b *testKafka) {
	cfg := testConfig(t, b)
	cfg.Archive.MaxRecords = 300
	cfg.Archive.MaxInterval = 30 * time.Millisecond
	cfgPath := filepath.Join(t.TempDir(), "archive.yml")
	raw, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	lake := openLake(t, cfg)
	logDir := t.TempDir()

	start := func(run int, crashAt string) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childConfigEnv+"="+cfgPath, childCrashEnv+"="+crashAt)
		logf, err := os.Create(filepath.Join(logDir, fmt.Sprintf("child-%02d.log", run)))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
		return cmd
	}
	dumpLogs := func() {
		files, _ := filepath.Glob(filepath.Join(logDir, "*.log"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			t.Logf("%s:\n%s", filepath.Base(f), b)
		}
	}

	// The stream keeps coming while children are started and killed.
	recs := stream(t, 12000, 5)
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; i < len(recs); i += 60 {
			produce(t, b, recs[i:min(i+60, len(recs))])
			time.Sleep(40 * time.Millisecond)
		}
	}()

	rng := rand.New(rand.NewPCG(5, 5))
	phases := []string{"", "dlq-acked", "files-written", "committed"}
	const minKills = 8
	kills, selfKills := 0, 0
	for run := 0; kills < minKills; run++ {
		crashAt := phases[run%len(phases)]
		before := fmt.Sprint(boundary(t, lake, b.topic))
		cmd := start(run, crashAt)
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// Wait for a commit (or a self-inflicted crash), then kill it
		// wherever it is: mid-batch, mid-write, mid-commit or idle.
		var err error
		waited := false
		deadline := time.Now().Add(time.Minute)
		for !waited && fmt.Sprint(boundary(t, lake, b.topic)) == before {
			select {
			case err = <-exited:
				waited = true
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				dumpLogs()
				t.Fatalf("run %d: no commit within a minute", run)
			}
		}
		if !waited {
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			cmd.Process.Signal(syscall.SIGKILL)
			err = <-exited
		} else {
			selfKills++
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			dumpLogs()
			t.Fatalf("run %d: child ended with %v, not by SIGKILL", run, err)
		}
		kills++
		t.Logf("run %d (crash at %q): killed (self: %v); table boundary %v", run, crashAt, waited, boundary(t, lake, b.topic))
	}
	<-produced

	last := start(kills, "")
	waitFor(t, 2*time.Minute, "the last child to catch up", func() bool {
		return covered(boundary(t, lake, b.topic), highWatermarks(recs))
	})
	last.Process.Signal(syscall.SIGTERM)
	if err := last.Wait(); err != nil {
		dumpLogs()
		t.Fatalf("last child: %v", err)
	}
	checkArchive(t, lake, b, recs)
	_, dlqTotal := readDLQ(t, b)
	t.Logf("%d records, %d kills (%d inside a flush); dlq holds %d records for %d distinct sources", len(recs), kills, selfKills, dlqTotal, countInvalid(recs))
	if dlqTotal != countInvalid(recs) {
		// Each restart reads back the dead letters written after the last
		// commit and does not send them again.
		t.Fatalf("dlq holds %d records for %d invalid sources: dead letters repeated across restarts", dlqTotal, countInvalid(recs))
	}
}

func countInvalid(recs []*sent) int {
	n := 0
	for _, s := range recs {
		if s.want == nil {
			n++
		}
	}
	return n
}
