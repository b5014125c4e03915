// Package s3test owns the S3 servers of lambdarec's lakehouse tests: a
// versitygw gateway serving a fresh directory on loopback, a bucket in it,
// and a counting proxy in front of it, so that a test can tell how many
// requests of which kind an operation sent to S3.
package s3test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/lambdarec/lambdarec/internal/porttest"
)

// EnvBinary overrides where the versitygw binary is; by default the tool
// declared in go.mod is used (`go tool -n versitygw` builds it once into
// the build cache).
const EnvBinary = "VERSITYGW"

// Region is the region the server's clients sign for.
const Region = "us-east-1"

// Server is a running versitygw.
type Server struct {
	Endpoint       string
	Access, Secret string
}

// Start starts versitygw on a fresh directory and stops it when the test
// ends (its log is shown when the test failed).
func Start(t testing.TB) *Server {
	t.Helper()
	bin := binary(t)
	addr := porttest.Addr(t)
	s := &Server{Endpoint: "http://" + addr, Access: "lambdarec-test", Secret: "lambdarec-test-secret"}
	logf, err := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--port", addr, "--access", s.Access, "--secret", s.Secret, "posix", t.TempDir())
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("versitygw log:\n%s", b)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.Endpoint)
		if err == nil {
			resp.Body.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not listen on %s within 30s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(EnvBinary); p != "" {
		return p
	}
	out, err := exec.Command("go", "tool", "-n", "versitygw").Output()
	if err != nil {
		msg := ""
		if ee, ok := err.(*exec.ExitError); ok {
			msg = string(ee.Stderr)
		}
		t.Fatalf("go tool -n versitygw (or set %s): %v %s", EnvBinary, err, msg)
	}
	return strings.TrimSpace(string(out))
}

// Client returns an S3 client of the server (path-style).
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.Access, s.Secret, ""),
	})
}

// CreateBucket creates bucket.
func (s *Server) CreateBucket(t testing.TB, bucket string) {
	t.Helper()
	if _, err := s.Client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("create bucket %s: %v", bucket, err)
	}
}

// SetEnv gives the process the server's credentials through the usual AWS
// chain (environment variables), for clients that read it (iceberg-go's).
func (s *Server) SetEnv(t testing.TB) {
	t.Setenv("AWS_ACCESS_KEY_ID", s.Access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.Secret)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_REGION", Region)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}

// Request is one request a Counter saw.
type Request struct {
	Method string
	Path   string // the object's path, bucket first, without the query
}

// Counter is a reverse proxy in front of a Server that records every
// request. Clients sign for the proxy's host, which it passes on unchanged.
type Counter struct {
	Endpoint string

	mu   sync.Mutex
	reqs []Request
}

// Count starts a Counter in front of s, closed when the test ends.
func (s *Server) Count(t testing.TB) *Counter {
	t.Helper()
	target, err := url.Parse(s.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	c := &Counter{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.reqs = append(c.reqs, Request{Method: r.Method, Path: r.URL.Path})
		c.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.Endpoint = srv.URL
	return c
}

// Mark returns the count of requests seen so far, for Since.
func (c *Counter) Mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reqs)
}

// Since returns the requests seen after mark.
func (c *Counter) Since(mark int) []Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Request(nil), c.reqs[mark:]...)
}
