// Package redistest owns the Redis servers of lambdarec's tests: the shared
// one CI starts (LAMBDAREC_TEST_REDIS) and private redis-server processes
// that a test starts for itself (a password, TLS, a server that goes down).
package redistest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/porttest"
)

// EnvAddr names the host:port of the Redis server CI starts (.ci/run).
const EnvAddr = "LAMBDAREC_TEST_REDIS"

// Addr returns the shared test server's address. Without LAMBDAREC_TEST_REDIS
// it starts a private server, when redis-server is installed; in CI (CI=true)
// the variable is required, so a CI without the server fails instead of
// skipping the suite.
func Addr(t testing.TB) string {
	t.Helper()
	if a := os.Getenv(EnvAddr); a != "" {
		return a
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not set: .ci/run starts redis-server and exports it", EnvAddr)
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skipf("%s is not set and redis-server is not installed (apt-get install redis-server)", EnvAddr)
	}
	return Start(t).Addr
}

// Server is a private redis-server of one test, stopped when the test ends.
type Server struct {
	// Addr is its host:port.
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
}

var prefixSeq atomic.Int64

// Prefix returns a key prefix no other test uses, so that tests can share a
// server.
func Prefix(t testing.TB) string {
	return fmt.Sprintf("lambdarec-test:%d:%d:%d:", os.Getpid(), time.Now().UnixNano()%1e9, prefixSeq.Add(1))
}

// Start runs redis-server on a free loopback port with no persistence, with
// the extra configuration directives given ("requirepass x", ...). A test
// that needs it fails when redis-server is not installed.
func Start(t testing.TB, directives ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server: %v (apt-get install redis-server)", err)
	}
	port := freePort(t)
	dir := t.TempDir()
	conf := []string{
		"bind 127.0.0.1", "port " + strconv.Itoa(port), "save \"\"", "appendonly no",
		"dir " + dir, "daemonize no", "loglevel warning", "logfile \"\"",
	}
	conf = append(conf, directives...)
	// A TLS-only server listens on tls-port; the plain port is 0 then.
	for _, d := range directives {
		if strings.HasPrefix(d, "tls-port ") {
			conf[1] = "port 0"
		}
	}
	file := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(file, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), done: make(chan struct{})}
	for _, d := range directives {
		if p, ok := strings.CutPrefix(d, "tls-port "); ok {
			s.Addr = net.JoinHostPort("127.0.0.1", p)
		}
	}
	s.cmd = exec.Command(bin, file)
	s.cmd.Stdout, s.cmd.Stderr = os.Stderr, os.Stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("redis-server exited at start (config %q)", conf)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s not answering after 20s: %v", s.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends the server (SIGKILL) and waits for it; it is idempotent.
func (s *Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// freePort returns a loopback port nobody listens on now, below the
// ephemeral range (porttest): redis-server binds it a moment later.
func freePort(t testing.TB) int {
	t.Helper()
	return porttest.Port(t)
}

// FreePort returns a loopback port that was free a moment ago, for a
// directive such as "tls-port".
func FreePort(t testing.TB) string { return strconv.Itoa(freePort(t)) }
