// Package local owns lambdarec's production topology on one machine: every
// role as its own process with its own YAML in this directory (archive.yml,
// speed-0.yml, speed-1.yml, serve-0.yml, serve-1.yml, batch.yml — the files a
// real deployment adapts), on the services production uses: a Kafka broker
// (a real one when LAMBDAREC_TEST_KAFKA names it, else `lambdarec broker`),
// PostgreSQL for the Iceberg SQL catalog, Iceberg on S3 through versitygw, and
// ClickHouse as the serving store. `go tool task topology` runs it; the
// rolling-restart test restarts each role under load.
//
// The services listen where the YAML files say (loopback, ports 15432,
// 17070, 19192, 18080-18081, 19465-19467); what differs per run — the Kafka
// brokers, topic and group names, the ClickHouse database, S3 credentials —
// is passed to the roles as LAMBDAREC_… and AWS_… variables.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Fixed service addresses; they match the YAML files of this directory.
const (
	PostgresPort = 15432
	S3Addr       = "127.0.0.1:17070"
	BrokerAddr   = "127.0.0.1:19192"
	Bucket       = "lambdarec"
	s3Access     = "lambdarec-local"
	s3Secret     = "lambdarec-local-secret"
)

// EnvKafka names a real Kafka broker (PLAINTEXT host:port) to use instead of
// the embedded one.
const EnvKafka = "LAMBDAREC_TEST_KAFKA"

// Role is one lambdarec process of the topology.
type Role struct {
	Name   string   // archive, speed-0, …; its YAML is Name+".yml"
	Args   []string // the subcommand
	Health string   // URL answering 200 once the role is ready; "" for none
}

// Roles are the lambdarec processes, in start order.
var Roles = []Role{
	{"archive", []string{"archive"}, "http://127.0.0.1:19465/healthz"},
	{"speed-0", []string{"speed"}, "http://127.0.0.1:19466/readyz"},
	{"speed-1", []string{"speed"}, "http://127.0.0.1:19467/readyz"},
	{"serve-0", []string{"serve"}, "http://127.0.0.1:18080/readyz"},
	{"serve-1", []string{"serve"}, "http://127.0.0.1:18081/readyz"},
	{"batch", []string{"batch", "schedule"}, ""},
}

// ServeURLs are the two serve replicas, behind no proxy.
var ServeURLs = []string{"http://127.0.0.1:18080", "http://127.0.0.1:18081"}

// Options configure Start.
type Options struct {
	// Bin is the lambdarec binary.
	Bin string
	// ConfigDir holds the roles' YAML files (this directory).
	ConfigDir string
	// Dir receives the services' data and every process's log.
	Dir string
	// ClickHouseDSN is a reachable ClickHouse (.ci/clickhouse.sh prints one);
	// the topology uses a database of its own on it.
	ClickHouseDSN string
	// Kafka is a real broker; empty starts `lambdarec broker`.
	Kafka string
	// RunID makes topic, group and database names unique to this run.
	RunID string
	Log   *slog.Logger
}

// Topology is a running topology.
type Topology struct {
	opts     Options
	env      []string // LAMBDAREC_… and AWS_… for every role
	services []*proc
	mu       sync.Mutex
	roles    map[string]*proc
	// Topic, ClickHouseDSN and Lake describe where the data goes.
	Topic         string
	ClickHouseDSN string
	Brokers       string
}

// proc is one child process with its log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	err  error
}

// Start starts the services and every role, waiting for each to be ready.
// Close stops them all.
func Start(ctx context.Context, opts Options) (_ *Topology, err error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.RunID == "" {
		opts.RunID = strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	}
	t := &Topology{opts: opts, roles: map[string]*proc{}}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	if err := os.MkdirAll(filepath.Join(opts.Dir, "log"), 0o755); err != nil {
		return nil, err
	}
	if err := t.startPostgres(ctx); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := t.startS3(ctx); err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	if err := t.clickhouse(ctx); err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	t.Brokers = opts.Kafka
	if t.Brokers == "" {
		p, err := t.spawn("broker", opts.Bin, []string{"broker", "--addr", BrokerAddr, "--partitions", "6"}, nil, nil)
		if err != nil {
			return nil, err
		}
		t.services = append(t.services, p)
		t.Brokers = BrokerAddr
		if err := waitFor(ctx, 60*time.Second, func() bool { return dialable(BrokerAddr) }); err != nil {
			return nil, fmt.Errorf("broker: %w", err)
		}
	}
	t.Topic = "topology-" + opts.RunID
	t.env = []string{
		"LAMBDAREC_KAFKA_BROKERS=" + t.Brokers,
		"LAMBDAREC_KAFKA_TOPIC=" + t.Topic,
		"LAMBDAREC_KAFKA_DLQ_TOPIC=" + t.Topic + ".dlq",
		"LAMBDAREC_SPEED_GROUP=" + t.Topic + "-speed",
		"LAMBDAREC_ARCHIVE_GROUP=" + t.Topic + "-archive",
		"LAMBDAREC_CLICKHOUSE_DSN=" + t.ClickHouseDSN,
		"AWS_ACCESS_KEY_ID=" + s3Access,
		"AWS_SECRET_ACCESS_KEY=" + s3Secret,
		"AWS_EC2_METADATA_DISABLED=true",
	}
	for _, r := range Roles {
		if err := t.StartRole(ctx, r.Name); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Env is what the roles get on top of the parent's environment; a test uses
// it to open the same lakehouse.
func (t *Topology) Env() []string { return append([]string(nil), t.env...) }

// Dir is where the services keep their data and every process its log.
func (t *Topology) Dir() string { return t.opts.Dir }

func role(name string) (Role, bool) {
	for _, r := range Roles {
		if r.Name == name {
			return r, true
		}
	}
	return Role{}, false
}

// StartRole starts the named role and waits until it is ready.
func (t *Topology) StartRole(ctx context.Context, name string) error {
	r, ok := role(name)
	if !ok {
		return fmt.Errorf("unknown role %q", name)
	}
	env := append([]string{"LAMBDAREC_CONFIG=" + filepath.Join(t.opts.ConfigDir, r.Name+".yml")}, t.env...)
	p, err := t.spawn(r.Name, t.opts.Bin, r.Args, env, nil)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.roles[name] = p
	t.mu.Unlock()
	ready := func() bool {
		select {
		case <-p.done:
			return true
		default:
		}
		if r.Health == "" {
			return true
		}
		resp, err := http.Get(r.Health)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if err := waitFor(ctx, 2*time.Minute, ready); err != nil {
		return fmt.Errorf("%s not ready: %w", name, err)
	}
	select {
	case <-p.done:
		return fmt.Errorf("%s exited at start: %v (log %s)", name, p.err, p.log.Name())
	default:
	}
	if r.Health == "" {
		// No endpoint to ask: alive a moment after start is all there is.
		select {
		case <-p.done:
			return fmt.Errorf("%s exited at start: %v (log %s)", name, p.err, p.log.Name())
		case <-time.After(time.Second):
		}
	}
	t.opts.Log.Info("role ready", "role", name, "pid", p.cmd.Process.Pid)
	return nil
}

// StopRole sends sig to the named role and waits for it to exit (a SIGTERM
// that is not obeyed within a minute is an error). It returns the exit error
// of the process: nil after a clean SIGTERM.
func (t *Topology) StopRole(name string, sig syscall.Signal) error {
	t.mu.Lock()
	p := t.roles[name]
	delete(t.roles, name)
	t.mu.Unlock()
	if p == nil {
		return fmt.Errorf("role %s is not running", name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", name, err)
	}
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within a minute of %s", name, sig)
	}
	if sig == syscall.SIGKILL {
		return nil
	}
	return p.err
}

// Close stops every role (SIGTERM) and then the services.
func (t *Topology) Close() error {
	var errs []error
	t.mu.Lock()
	names := make([]string, 0, len(t.roles))
	for n := range t.roles {
		names = append(names, n)
	}
	t.mu.Unlock()
	for _, n := range names {
		if err := t.StopRole(n, syscall.SIGTERM); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(t.services) - 1; i >= 0; i-- {
		p := t.services[i]
		p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
	return errors.Join(errs...)
}

// spawn starts bin with args, its output appended to Dir/log/name.log.
func (t *Topology) spawn(name, bin string, args, env []string, cred *syscall.Credential) (*proc, error) {
	logf, err := os.OpenFile(filepath.Join(t.opts.Dir, "log", name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	fmt.Fprintf(logf, "=== %s %s %s\n", time.Now().Format(time.RFC3339Nano), bin, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logf, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// cleanEnv is the parent's environment without the LAMBDAREC_ configuration
// variables of the parent (a test's own settings must not leak into roles).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LAMBDAREC_") || strings.HasPrefix(kv, "AWS_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (t *Topology) startPostgres(ctx context.Context) error {
	bin, err := postgresBin()
	if err != nil {
		return err
	}
	dir := filepath.Join(t.opts.Dir, "postgres")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running as root and no postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return err
		}
	}
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("initdb: %v: %s", err, out)
		}
	}
	port := strconv.Itoa(PostgresPort)
	p, err := t.spawn("postgres", filepath.Join(bin, "postgres"),
		[]string{"-D", data, "-p", port, "-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"}, nil, cred)
	if err != nil {
		return err
	}
	t.services = append(t.services, p)
	return waitFor(ctx, time.Minute, func() bool {
		return exec.Command(filepath.Join(bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", port, "-U", "postgres").Run() == nil
	})
}

// postgresBin finds the installed PostgreSQL binaries (POSTGRES_BIN_DIR,
// initdb on PATH, or Debian's /usr/lib/postgresql/<version>/bin).
func postgresBin() (string, error) {
	if d := os.Getenv("POSTGRES_BIN_DIR"); d != "" {
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
		return "", errors.New("no initdb on PATH nor in /usr/lib/postgresql/*/bin (install Debian's postgresql)")
	}
	return dirs[len(dirs)-1], nil
}

func (t *Topology) startS3(ctx context.Context) error {
	bin := os.Getenv("VERSITYGW")
	if bin == "" {
		out, err := exec.CommandContext(ctx, "go", "tool", "-n", "versitygw").Output()
		if err != nil {
			return fmt.Errorf("go tool -n versitygw: %w", err)
		}
		bin = strings.TrimSpace(string(out))
	}
	dir := filepath.Join(t.opts.Dir, "s3")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p, err := t.spawn("versitygw", bin, []string{"--port", S3Addr, "--access", s3Access, "--secret", s3Secret, "posix", dir}, nil, nil)
	if err != nil {
		return err
	}
	t.services = append(t.services, p)
	if err := waitFor(ctx, time.Minute, func() bool { return dialable(S3Addr) }); err != nil {
		return err
	}
	cl := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String("http://" + S3Addr),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s3Access, s3Secret, ""),
	})
	if _, err := cl.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(Bucket)}); err == nil {
		return nil
	}
	if _, err := cl.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(Bucket)}); err != nil {
		return fmt.Errorf("create bucket %s: %w", Bucket, err)
	}
	return nil
}

// clickhouse creates the run's database on the given server and sets
// t.ClickHouseDSN to it.
func (t *Topology) clickhouse(ctx context.Context) error {
	u, err := url.Parse(t.opts.ClickHouseDSN)
	if err != nil || u.Scheme != "clickhouse" {
		return fmt.Errorf("DSN %q: want clickhouse://host:port/database", t.opts.ClickHouseDSN)
	}
	db := "lambdarec_topology_" + t.opts.RunID
	opts, err := clickhouse.ParseDSN(t.opts.ClickHouseDSN)
	if err != nil {
		return err
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+db); err != nil {
		return fmt.Errorf("create database %s: %w", db, err)
	}
	u.Path = "/" + db
	t.ClickHouseDSN = u.String()
	return nil
}

// DropClickHouse drops the run's database.
func (t *Topology) DropClickHouse(ctx context.Context) error {
	opts, err := clickhouse.ParseDSN(t.opts.ClickHouseDSN)
	if err != nil {
		return err
	}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Exec(ctx, "DROP DATABASE IF EXISTS lambdarec_topology_"+t.opts.RunID)
}

func dialable(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// waitFor polls cond until it holds or d passes.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// LogTail returns the last n bytes of a process's log, for failure reports.
func (t *Topology) LogTail(name string, n int64) string {
	f, err := os.Open(filepath.Join(t.opts.Dir, "log", name+".log"))
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
