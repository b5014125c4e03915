// Package clickhousetest owns the ClickHouse databases of lambdarec's tests:
// a scratch database per test on the server CI starts (.ci/clickhouse.sh,
// named by LAMBDAREC_CLICKHOUSE_DSN), dropped when the test ends.
package clickhousetest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
)

// EnvDSN names the DSN of the ClickHouse server CI starts.
const EnvDSN = "LAMBDAREC_CLICKHOUSE_DSN"

var seq atomic.Int64

// ServerDSN returns LAMBDAREC_CLICKHOUSE_DSN. Without it the test is
// skipped, except in CI (CI=true), where it fails: a CI without the server
// must not pass by skipping.
func ServerDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: .ci/run starts clickhouse-server and exports it", EnvDSN)
		}
		t.Skipf("%s is not set; run .ci/clickhouse.sh and export %s=clickhouse://127.0.0.1:9000/default", EnvDSN, EnvDSN)
	}
	return dsn
}

// DSN creates an empty database for one test on the server ServerDSN names,
// drops it when the test ends, and returns a DSN pointing at it.
func DSN(t testing.TB) string {
	t.Helper()
	dsn, _ := Database(t, ServerDSN(t))
	return dsn
}

// Database creates an empty database on the server dsn names, drops it when
// the test ends, and returns a DSN pointing at it and its name.
func Database(t testing.TB, dsn string) (string, string) {
	t.Helper()
	opts, err := ch.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvDSN, err)
	}
	admin, err := ch.Open(opts)
	if err != nil {
		t.Fatalf("open ClickHouse: %v", err)
	}
	db := fmt.Sprintf("lambdarec_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9, seq.Add(1))
	if err := admin.Exec(context.Background(), "CREATE DATABASE "+db); err != nil {
		_ = admin.Close()
		t.Fatalf("create database %s: %v", db, err)
	}
	t.Cleanup(func() {
		if err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db); err != nil {
			t.Errorf("drop database %s: %v", db, err)
		}
		_ = admin.Close()
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvDSN, err)
	}
	u.Path = "/" + db
	return u.String(), db
}
