package serving

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/store/clickhouse"
	"github.com/lambdarec/lambdarec/internal/store/clickhousetest"
)

// tcpProxy forwards connections to a real server until cut: then it stops
// listening and closes every connection, which is what a store that went
// down looks like to its clients.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target}
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
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p
}

func (p *tcpProxy) cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestReadyzClickHouseDown serves from the real ClickHouse store through a
// proxy, then cuts the proxy: /readyz turns 503 naming the store, reads
// that the store's caches could have answered with an empty 200 get 503
// store_unavailable, and /v1/status reports the store down.
func TestReadyzClickHouseDown(t *testing.T) {
	dsn := clickhousetest.ServerDSN(t)
	u, err := url.Parse(scratchDatabase(t, dsn))
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	u.RawQuery = "dial_timeout=1s&read_timeout=2s"
	st, err := clickhouse.New(context.Background(), clickhouse.Config{DSN: u.String(), RefreshInterval: time.Hour}, nil)
	if err != nil {
		t.Fatal(err)
	}
	storeGoesDown(t, st, proxy.cut)
}
