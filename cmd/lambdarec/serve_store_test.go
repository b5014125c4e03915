package main

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store/clickhousetest"
)

// TestServeStartsWithClickHouseDown runs `lambdarec serve` with the
// ClickHouse store on a port where nothing listens: serve starts anyway,
// /readyz is 503 naming the store, /v1/status and /metrics report the
// serving store down; then the port starts forwarding to the real ClickHouse
// server and serve becomes ready on its own, the store up in /v1/status.
func TestServeStartsWithClickHouseDown(t *testing.T) {
	dsn := clickhousetest.ServerDSN(t)
	br := startBroker(t, 1, "events", "events.dlq")
	isolateIceberg(t)
	real, db := scratchClickHouse(t, dsn)

	// A port nothing listens on, for now (and that no outgoing connection
	// takes before forward listens on it: porttest).
	addr := freeAddr(t)
	t.Setenv("LAMBDAREC_CLICKHOUSE_DSN", "clickhouse://"+addr+"/"+db+"?dial_timeout=1s")

	sc := startServe(t, 20*time.Second, "", "--http", "127.0.0.1:0", "--brokers", br.Addr(), "--store", "clickhouse")
	base, stderr := sc.base, sc.stderr

	// Down: not ready, and every report says why.
	status, body := serveTestDo(t, http.MethodGet, base+"/readyz", "", "")
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "serving store: clickhouse store: not connected yet") {
		t.Fatalf("/readyz with ClickHouse down: %d %s", status, body)
	}
	if _, body := serveTestDo(t, http.MethodGet, base+"/v1/status", "", ""); !strings.Contains(body, `"store_unreachable"`) {
		t.Errorf("/v1/status with ClickHouse down does not report the store unreachable: %s", body)
	}
	if _, body := serveTestDo(t, http.MethodGet, base+"/metrics", "", ""); !strings.Contains(body, `lambdarec_status_layer_state{layer="serving_store",state="down"} 1`) {
		t.Errorf("/metrics with ClickHouse down does not mark the serving store down")
	}
	if status, _ := serveTestDo(t, http.MethodGet, base+"/v1/recommendations?user_id=u1", "", ""); status != http.StatusServiceUnavailable {
		t.Errorf("recommendations with ClickHouse down: %d, want 503", status)
	}
	if status, _ := serveTestDo(t, http.MethodGet, base+"/healthz", "", ""); status != http.StatusOK {
		t.Errorf("/healthz with ClickHouse down: %d, want 200 (alive, not ready)", status)
	}

	// Up: the port now reaches the real server.
	forward(t, addr, real)
	for deadline := time.Now().Add(60 * time.Second); ; {
		status, body = serveTestDo(t, http.MethodGet, base+"/readyz", "", "")
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready 60 s after ClickHouse came up: %d %s\n%s", status, body, stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, body := serveTestDo(t, http.MethodGet, base+"/v1/status", "", ""); strings.Contains(body, `"store_unreachable"`) {
		t.Errorf("/v1/status after ClickHouse came up still reports it unreachable: %s", body)
	}
	if status, body := serveTestDo(t, http.MethodGet, base+"/v1/recommendations?user_id=u1", "", ""); status != http.StatusOK {
		t.Errorf("recommendations after ClickHouse came up: %d %s", status, body)
	}
	if !strings.Contains(stderr.String(), `msg="clickhouse store connected"`) {
		t.Errorf("no recovery logged")
	}
	if n := strings.Count(stderr.String(), `msg="clickhouse store not reachable; retrying"`); n == 0 || n > 20 {
		t.Errorf("%d retry lines logged, want a few", n)
	}
	sc.stop(t)
}

// scratchClickHouse creates an empty database on the server dsn names, drops
// it when the test ends, and returns the server's address and the database.
func scratchClickHouse(t *testing.T, dsn string) (addr, db string) {
	t.Helper()
	scratch, db := clickhousetest.Database(t, dsn)
	u, err := url.Parse(scratch)
	if err != nil {
		t.Fatalf("parse %s: %v", scratch, err)
	}
	return u.Host, db
}

// forward listens on addr and forwards every connection to target until
// the test ends.
func forward(t *testing.T, addr, target string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
}
