package serving

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
)

// At serve.max_connections the server closes the longest-idle connection
// for a newcomer, and refuses the newcomer only while every connection is
// busy with a request.
func TestMaxConnections(t *testing.T) {
	cfg := config.Default().Serve
	cfg.Addr, cfg.MaxConnections = "127.0.0.1:0", 2
	s, err := NewServer(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	s.Handle("GET /block", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.WriteHeader(http.StatusNoContent)
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() { close(release); cancel(); <-done }()
	base := "http://" + ln.Addr().String()
	newClient := func() *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	}

	// Two idle connections fill the server; a request still gets in.
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	// Idle for evictAfter from when the server took them: a loaded machine
	// can accept them late, and then with the request's connection.
	for deadline := time.Now().Add(10 * time.Second); s.conns.Load() == nil || s.conns.Load().open() < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the server did not accept the two idle connections")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(3 * evictAfter)
	resp, err := newClient().Get(base + "/healthz")
	if err != nil {
		t.Fatalf("request behind idle connections: %v", err)
	}
	resp.Body.Close()
	if n := s.conns.Load(); n == nil || n.evicted == 0 {
		t.Fatal("no idle connection evicted")
	}

	// The request's own connection closes after its answer (no keep-alive):
	// wait for that, so that only the remaining idle connection is held.
	for deadline := time.Now().Add(5 * time.Second); s.conns.Load().open() > 1; {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections open after the request closed its own, want 1 (the idle one)", s.conns.Load().open())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Two busy requests fill it: a newcomer is refused, not queued.
	busy := make(chan error, 2)
	for range 2 {
		go func() {
			resp, err := newClient().Get(base + "/block")
			if err == nil {
				resp.Body.Close()
			}
			busy <- err
		}()
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		s.conns.Load().mu.Lock()
		active := 0
		for _, in := range s.conns.Load().conns {
			if in.state == http.StateActive {
				active++
			}
		}
		s.conns.Load().mu.Unlock()
		if active == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d requests active, want 2", active)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if resp, err := newClient().Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("a third connection was served while two requests were busy: %d", resp.StatusCode)
	}
	if s.conns.Load().open() > 2 {
		t.Fatalf("%d connections open, limit 2", s.conns.Load().open())
	}
}
