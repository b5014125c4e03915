package backend_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka/kafkatest"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/backend"
	"github.com/lambdarec/lambdarec/internal/store/redis"
	"github.com/lambdarec/lambdarec/internal/store/redis/redistest"
)

func openRedis(t *testing.T, env ...string) (store.Store, error) {
	t.Helper()
	cfg, err := config.Load("", append([]string{"LAMBDAREC_STORE_BACKEND=redis", "LAMBDAREC_STORE_REDIS_PREFIX=" + redistest.Prefix(t)}, env...))
	if err != nil {
		t.Fatal(err)
	}
	return backend.Open(t.Context(), cfg, nil)
}

func TestOpenRedis(t *testing.T) {
	s, err := openRedis(t, "LAMBDAREC_STORE_REDIS_ADDR="+redistest.Addr(t), "LAMBDAREC_SPEED_SESSION_TIMEOUT=7m")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.(*redis.Store); !ok {
		t.Errorf("backend is %T, want *redis.Store", s)
	}
	if err := s.(pinger).Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

type pinger interface{ Ping(context.Context) error }

type hotExpirer interface {
	ExpireHot(context.Context, time.Time) (int64, error)
}

// A server with a password: from a file and from the environment; a wrong
// or missing password is a clear error that does not show the password.
// sessionCacheTracks reads a session through s, a Redis store, and waits
// until its session cache's invalidation connection is up.
func sessionCacheTracks(t *testing.T, s store.Store) {
	t.Helper()
	rs, ok := s.(*redis.Store)
	if !ok {
		t.Fatalf("store is %T, want *redis.Store", s)
	}
	if _, _, err := rs.Session(t.Context(), "s"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !rs.Stats().SessionCacheActive; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the session cache's invalidation connection did not come up")
		}
	}
}

func TestOpenRedisPassword(t *testing.T) {
	const password = "s3cret-redis-pw"
	srv := redistest.Start(t, "requirepass "+password)
	addr := "LAMBDAREC_STORE_REDIS_ADDR=" + srv.Addr
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := openRedis(t, addr, "LAMBDAREC_STORE_REDIS_PASSWORD_FILE="+file)
	if err != nil {
		t.Fatalf("password file: %v", err)
	}
	if err := s.UpsertSession(t.Context(), store.SessionView{SessionID: "s", Offset: 1}); err != nil {
		t.Errorf("upsert with the password: %v", err)
	}
	sessionCacheTracks(t, s) // its connection authenticates too
	s.Close()
	t.Setenv("REDIS_TEST_PASSWORD", password)
	s, err = openRedis(t, addr, "LAMBDAREC_STORE_REDIS_PASSWORD_ENV=REDIS_TEST_PASSWORD")
	if err != nil {
		t.Fatalf("password from the environment: %v", err)
	}
	s.Close()

	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("not-"+password), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, env := range map[string][]string{
		"wrong password": {addr, "LAMBDAREC_STORE_REDIS_PASSWORD_FILE=" + wrong},
		"no password":    {addr},
	} {
		s, err := openRedis(t, env...)
		if err == nil {
			s.Close()
			t.Errorf("%s: opened", name)
			continue
		}
		msg := strings.ToLower(err.Error())
		if !strings.Contains(msg, "wrongpass") && !strings.Contains(msg, "noauth") && !strings.Contains(msg, "password") {
			t.Errorf("%s: %v, want an authentication error", name, err)
		}
		if strings.Contains(err.Error(), password) {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	_, err = openRedis(t, addr, "LAMBDAREC_STORE_REDIS_PASSWORD_ENV=REDIS_TEST_UNSET_VARIABLE")
	if err == nil || !strings.Contains(err.Error(), "REDIS_TEST_UNSET_VARIABLE is not set") {
		t.Errorf("unset variable: %v", err)
	}
}

// A TLS-only server: the right CA connects; no CA (system roots), a wrong
// server name and a plaintext client fail clearly.
func TestOpenRedisTLS(t *testing.T) {
	ca := kafkatest.NewCA(t)
	stc := ca.ServerTLS(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	der, err := x509.MarshalPKCS8PrivateKey(stc.Certificates[0].PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(
		os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: stc.Certificates[0].Certificate[0]}), 0o600),
		os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600),
	); err != nil {
		t.Fatal(err)
	}
	port := redistest.FreePort(t)
	srv := redistest.Start(t, "tls-port "+port, "tls-cert-file "+certFile, "tls-key-file "+keyFile,
		"tls-ca-cert-file "+ca.File, "tls-auth-clients no")
	addr := "LAMBDAREC_STORE_REDIS_ADDR=" + srv.Addr

	s, err := openRedis(t, addr, "LAMBDAREC_STORE_REDIS_TLS_ENABLED=true", "LAMBDAREC_STORE_REDIS_TLS_CA_FILE="+ca.File)
	if err != nil {
		t.Fatalf("TLS with the server's CA: %v", err)
	}
	if err := s.UpsertSession(t.Context(), store.SessionView{SessionID: "s", Offset: 1}); err != nil {
		t.Errorf("upsert over TLS: %v", err)
	}
	sessionCacheTracks(t, s) // its connection speaks TLS too
	s.Close()
	for name, env := range map[string][]string{
		"unknown CA":        {addr, "LAMBDAREC_STORE_REDIS_TLS_ENABLED=true", "LAMBDAREC_STORE_REDIS_TIMEOUT=1s"},
		"wrong server name": {addr, "LAMBDAREC_STORE_REDIS_TLS_ENABLED=true", "LAMBDAREC_STORE_REDIS_TLS_CA_FILE=" + ca.File, "LAMBDAREC_STORE_REDIS_TLS_SERVER_NAME=redis.example", "LAMBDAREC_STORE_REDIS_TIMEOUT=1s"},
	} {
		s, err := openRedis(t, env...)
		if err == nil {
			s.Close()
			t.Errorf("%s: opened", name)
		} else if !strings.Contains(err.Error(), "certificate") {
			t.Errorf("%s: %v, want a certificate error", name, err)
		}
	}
	if s, err := openRedis(t, addr, "LAMBDAREC_STORE_REDIS_TIMEOUT=1s"); err == nil {
		s.Close()
		t.Error("plaintext client on the TLS port opened")
	} else {
		t.Logf("plaintext client on the TLS port: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bad, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openRedis(t, addr, "LAMBDAREC_STORE_REDIS_TLS_ENABLED=true", "LAMBDAREC_STORE_REDIS_TLS_CA_FILE="+bad); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("bad CA file: %v", err)
	}
}

// store.sessions: redis beside ClickHouse: batch reads from ClickHouse,
// sessions from Redis, expiry and ping reach both.
func TestOpenClickHouseWithRedisSessions(t *testing.T) {
	dsn := os.Getenv("LAMBDAREC_CLICKHOUSE_DSN")
	if dsn == "" {
		t.Skip("LAMBDAREC_CLICKHOUSE_DSN is not set; run .ci/clickhouse.sh")
	}
	prefix := redistest.Prefix(t)
	cfg, err := config.Load("", []string{"LAMBDAREC_STORE_BACKEND=clickhouse", "LAMBDAREC_CLICKHOUSE_DSN=" + dsn,
		"LAMBDAREC_STORE_SESSIONS=redis", "LAMBDAREC_STORE_REDIS_ADDR=" + redistest.Addr(t), "LAMBDAREC_STORE_REDIS_PREFIX=" + prefix})
	if err != nil {
		t.Fatal(err)
	}
	s, err := backend.Open(t.Context(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sv := store.SessionView{SessionID: "split-" + prefix, Offset: 3, EventTime: time.Now().Add(-time.Hour), Items: []store.Scored{{Item: "a", Score: 1}}}
	if err := s.UpsertSession(t.Context(), sv); err != nil {
		t.Fatal(err)
	}
	// Written to Redis, not ClickHouse.
	rs, err := redis.New(t.Context(), redis.Config{Addr: cfg.Store.Redis.Addr, Prefix: prefix}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if got, ok, err := rs.Session(t.Context(), sv.SessionID); err != nil || !ok || got.Offset != 3 {
		t.Errorf("session in Redis = %+v, %v, %v", got, ok, err)
	}
	if got, ok, err := s.Session(t.Context(), sv.SessionID); err != nil || !ok || got.Offset != 3 {
		t.Errorf("session through the split store = %+v, %v, %v", got, ok, err)
	}
	if err := s.(pinger).Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
	// The maintainer's hot retention expires the Redis sessions too.
	if _, err := s.(hotExpirer).ExpireHot(t.Context(), time.Now()); err != nil {
		t.Fatalf("ExpireHot: %v", err)
	}
	if _, ok, err := rs.Session(t.Context(), sv.SessionID); err != nil || ok {
		t.Errorf("session after ExpireHot = %v, %v; want gone", ok, err)
	}
}
