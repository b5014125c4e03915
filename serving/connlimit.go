package serving

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// connLimiter bounds the client connections a server holds open at once
// (serve.max_connections), so idle clients cannot exhaust the process's file
// handles. Unlike a listener that stops accepting at the limit (such as
// golang.org/x/net/netutil.LimitListener, under which a new client waits
// behind every idle connection in the accept queue), it keeps accepting:
// at the limit it closes the connection idle longest (one that sent no
// request yet, or waits between requests) to make room, and only when every
// connection is busy with a request does it close the newcomer at once.
// Accepted connections are tracked from the server's ConnState hook.
type connLimiter struct {
	net.Listener
	max int

	mu    sync.Mutex
	conns map[net.Conn]connInfo
	// evicted counts connections closed to make room; refused counts
	// newcomers closed because every connection was busy.
	evicted, refused uint64
}

type connInfo struct {
	state http.ConnState
	since time.Time
}

// evictAfter is how long a connection must have been idle (or silent since
// it opened) before it may be closed to make room: a client that just
// connected gets a moment to send its request.
const evictAfter = 100 * time.Millisecond

func newConnLimiter(ln net.Listener, max int) *connLimiter {
	return &connLimiter{Listener: ln, max: max, conns: map[net.Conn]connInfo{}}
}

// Accept returns the next connection, making room for it when the limit is
// reached.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.admit(c) {
			return c, nil
		}
		c.Close()
	}
}

// admit registers c, closing the longest-idle connection if the limit is
// reached; it returns false when there is no room.
func (l *connLimiter) admit(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) >= l.max {
		var (
			victim net.Conn
			oldest time.Time
		)
		now := time.Now()
		for vc, in := range l.conns {
			if (in.state == http.StateNew || in.state == http.StateIdle) && now.Sub(in.since) >= evictAfter &&
				(victim == nil || in.since.Before(oldest)) {
				victim, oldest = vc, in.since
			}
		}
		if victim == nil {
			l.refused++
			return false
		}
		delete(l.conns, victim)
		victim.Close() // the server sees it closed and reports StateClosed
		l.evicted++
	}
	l.conns[c] = connInfo{state: http.StateNew, since: time.Now()}
	return true
}

// connState is the http.Server's ConnState hook.
func (l *connLimiter) connState(c net.Conn, s http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch s {
	case http.StateClosed, http.StateHijacked:
		delete(l.conns, c)
	default:
		if _, ok := l.conns[c]; ok {
			l.conns[c] = connInfo{state: s, since: time.Now()}
		}
	}
}

// open returns the connections held now.
func (l *connLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}
