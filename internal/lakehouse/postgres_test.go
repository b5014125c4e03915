package lakehouse

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/porttest"
)

// The SQL catalog on PostgreSQL is tested against a real server that the
// tests start from the installed binaries (Debian's postgresql package puts
// them in /usr/lib/postgresql/<version>/bin); postgresBinEnv names another
// directory. As root, the server runs as the postgres user.
const postgresBinEnv = "POSTGRES_BIN_DIR"

var pg struct {
	once sync.Once
	dsn  string
	err  error
	stop func()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pg.stop != nil {
		pg.stop()
	}
	os.Exit(code)
}

// postgresDSN starts the package's PostgreSQL server on first use and
// returns its DSN.
func postgresDSN(t *testing.T) string {
	t.Helper()
	pg.once.Do(func() { pg.dsn, pg.stop, pg.err = startPostgres() })
	if pg.err != nil {
		t.Fatalf("postgres: %v (install Debian's postgresql package, or set %s)", pg.err, postgresBinEnv)
	}
	return pg.dsn
}

func postgresBinDir() (string, error) {
	if d := os.Getenv(postgresBinEnv); d != "" {
		return d, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real), nil
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	if len(dirs) == 0 {
		return "", fmt.Errorf("no initdb on PATH nor in /usr/lib/postgresql/*/bin")
	}
	return dirs[len(dirs)-1], nil
}

func startPostgres() (dsn string, stop func(), err error) {
	bin, err := postgresBinDir()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "lakehouse-pg-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			cleanup()
			return "", nil, fmt.Errorf("running as root and no postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			cleanup()
			return "", nil, err
		}
	}
	command := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Dir = dir
		return cmd
	}
	data := filepath.Join(dir, "data")
	if out, err := command("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	p, err := porttest.Free()
	if err != nil {
		cleanup()
		return "", nil, err
	}
	port := strconv.Itoa(p)
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		cleanup()
		return "", nil, err
	}
	srv := command("postgres", "-D", data, "-p", port, "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off")
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		cleanup()
		return "", nil, err
	}
	stop = func() {
		srv.Process.Signal(syscall.SIGINT) // fast shutdown
		done := make(chan struct{})
		go func() { srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			srv.Process.Kill()
			<-done
		}
		logf.Close()
		cleanup()
	}
	// Listening is not ready: the server refuses connections while it starts
	// up ("the database system is starting up"). pg_isready says when it
	// accepts them.
	for deadline := time.Now().Add(30 * time.Second); ; {
		if exec.Command(filepath.Join(bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", port, "-U", "postgres").Run() == nil {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			stop()
			return "", nil, fmt.Errorf("server did not accept connections: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "postgres://postgres@127.0.0.1:" + port + "/postgres?sslmode=disable", stop, nil
}
