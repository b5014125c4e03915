package redis

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/lambdarec/lambdarec/internal/store"
)

// sessionCache keeps decoded session views in this process, exact by Redis's
// server-assisted invalidation (CLIENT TRACKING, broadcast mode): one
// dedicated RESP3 connection asks Redis to announce every change of a key
// under "P s:" (an upsert, an expiry, an UNLINK, a FLUSHALL), and one
// goroutine reads the announcements and drops the entries they name. The
// connection is opened at the first session read, so a process that only
// writes sessions gets no announcements.
//
// What "exact" means here. Redis queues the announcement of a change on the
// tracking connection while it executes the command that makes it, before
// it answers that command. A view served from the cache is therefore never
// older than Redis's value at the moment the last announcement read from
// the tracking connection was sent: a change is seen by every read that
// starts after its announcement was read (a loopback round trip after the
// writer's reply, typically tens of microseconds). Entries are inserted only
// when no announcement for their shard, no other insertion into it, no reset
// and no loss of the tracking connection came between the start of the Redis
// read that fetched them and the insertion, so a value read before a change
// can never be cached after that change's announcement was handled, nor
// after a newer value another read of the process found (reads of one
// process never see a session go back). An entry also ends when its key's
// TTL does (PTTL is read with the view), so a session Redis expired is not
// served even before Redis announces the expiry.
//
// When the tracking connection fails, or answers no PING for Timeout, the
// cache is emptied and bypassed — every read goes to Redis, exact as without
// a cache — until a new connection has tracking on again (retried with
// backoff; a rate-limited warning is logged). Readiness does not change:
// reads still work, only slower. Stats reports the state.
type sessionCache struct {
	cfg       Config
	log       *slog.Logger
	keyPrefix string // P s:

	seed   maphash.Seed
	shards [sessionCacheShards]sessionShard

	// active is true while the tracking connection is up with tracking on;
	// epoch changes on every reset, so reads that began before a reset do
	// not insert after it.
	active atomic.Bool
	epoch  atomic.Uint64

	hits, misses, invalidations, resets atomic.Int64
	lastReply                           atomic.Int64 // unix ns of the last frame read

	ctx     context.Context
	stop    context.CancelFunc
	start   sync.Once
	started atomic.Bool
	done    chan struct{}
}

const sessionCacheShards = 32

type sessionShard struct {
	mu  sync.Mutex
	gen atomic.Uint64 // bumped (under mu) by every invalidation of and insertion into the shard
	lru *simplelru.LRU[string, *cachedSession]
}

type cachedSession struct {
	view    store.SessionView
	found   bool
	expires time.Time // zero: no TTL
}

// cacheToken is what a read snapshots before it goes to Redis; put inserts
// only if nothing changed since.
type cacheToken struct {
	ok    bool
	epoch uint64
	gen   uint64
}

// Tracking connection timings.
const (
	trackPingInterval = 250 * time.Millisecond
	trackBackoffMin   = 50 * time.Millisecond
	trackBackoffMax   = 2 * time.Second
)

func newSessionCache(cfg Config, log *slog.Logger) *sessionCache {
	c := &sessionCache{cfg: cfg, log: log, keyPrefix: cfg.Prefix + "s:", seed: maphash.MakeSeed(), done: make(chan struct{})}
	per := max(1, cfg.SessionCacheEntries/sessionCacheShards)
	for i := range c.shards {
		c.shards[i].lru, _ = simplelru.NewLRU[string, *cachedSession](per, nil) // errors only on size <= 0
	}
	c.ctx, c.stop = context.WithCancel(context.Background())
	return c
}

// ensureTracking starts the tracking connection on the first session read,
// so that processes that only write sessions (the speed layer) do not get
// every announcement.
func (c *sessionCache) ensureTracking() {
	c.start.Do(func() {
		if c.ctx.Err() != nil {
			return // closed
		}
		c.started.Store(true)
		go c.run(c.ctx)
	})
}

func (c *sessionCache) close() {
	c.stop()
	c.start.Do(func() {}) // no start after close
	if c.started.Load() {
		<-c.done
	}
	c.reset()
}

func (c *sessionCache) shard(id string) *sessionShard {
	return &c.shards[maphash.String(c.seed, id)%sessionCacheShards]
}

// get returns the cached view of session id; hit is false when the cache
// cannot answer.
func (c *sessionCache) get(id string) (sv store.SessionView, found, hit bool) {
	if !c.active.Load() {
		c.ensureTracking()
		return store.SessionView{}, false, false
	}
	sh := c.shard(id)
	sh.mu.Lock()
	e, ok := sh.lru.Get(id)
	sh.mu.Unlock()
	if !ok || !e.expires.IsZero() && !time.Now().Before(e.expires) {
		c.misses.Add(1)
		return store.SessionView{}, false, false
	}
	c.hits.Add(1)
	if !e.found {
		return store.SessionView{}, false, true
	}
	sv = e.view
	sv.Items = clone(sv.Items)
	sv.Purchased = clone(sv.Purchased)
	return sv, true, true
}

func clone[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}

// begin snapshots the state a read of id starts from.
func (c *sessionCache) begin(id string) cacheToken {
	if !c.active.Load() {
		return cacheToken{}
	}
	return cacheToken{ok: true, epoch: c.epoch.Load(), gen: c.shard(id).gen.Load()}
}

// put caches what a read that began with tok found, unless an invalidation
// of its shard or a reset came in between. pttl is the key's remaining TTL as
// Redis answered it (negative: none), counted from sent, when the read was sent.
func (c *sessionCache) put(id string, tok cacheToken, sv store.SessionView, found bool, pttl time.Duration, sent time.Time) {
	if !tok.ok {
		return
	}
	e := &cachedSession{view: sv, found: found}
	if found && pttl >= 0 {
		e.expires = sent.Add(pttl)
	}
	e.view.Items = clone(sv.Items)
	e.view.Purchased = clone(sv.Purchased)
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if !c.active.Load() || c.epoch.Load() != tok.epoch || sh.gen.Load() != tok.gen {
		// Not cached; but an entry older than what this read found (another
		// read's, sent before a write whose announcement is not read yet)
		// must not be served after it, to a reader that saw this one.
		if old, ok := sh.lru.Peek(id); ok && found && (!old.found || store.Newer(&sv, &old.view)) {
			sh.gen.Add(1)
			sh.lru.Remove(id)
		}
		return
	}
	// An insertion ends the reads of the shard in flight too: one that was
	// sent before a write whose announcement is not read yet would
	// otherwise replace (or, after an eviction, follow) the newer view this
	// read found.
	sh.gen.Add(1)
	sh.lru.Add(id, e)
}

// invalidate drops the entry of a changed key.
func (c *sessionCache) invalidate(key string) {
	id, ok := strings.CutPrefix(key, c.keyPrefix)
	if !ok {
		return
	}
	c.invalidations.Add(1)
	c.forget(id)
}

// forget drops the entry of session id and keeps reads in flight from
// inserting what they read. This process's own writes call it after Redis
// answered them, so that a read after a write of the same process sees it
// without waiting for the announcement.
func (c *sessionCache) forget(id string) {
	sh := c.shard(id)
	sh.mu.Lock()
	sh.gen.Add(1)
	sh.lru.Remove(id)
	sh.mu.Unlock()
}

// reset empties the cache and bypasses it until activate.
func (c *sessionCache) reset() {
	c.active.Store(false)
	c.epoch.Add(1)
	c.resets.Add(1)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.gen.Add(1)
		sh.lru.Purge()
		sh.mu.Unlock()
	}
}

func (c *sessionCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += sh.lru.Len()
		sh.mu.Unlock()
	}
	return n
}

// run keeps a tracking connection up until ctx ends.
func (c *sessionCache) run(ctx context.Context) {
	defer close(c.done)
	backoff := trackBackoffMin
	for ctx.Err() == nil {
		start := time.Now()
		err := c.track(ctx)
		c.reset()
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("session cache bypassed: invalidation connection lost", "err", err)
		if time.Since(start) > 10*trackBackoffMax {
			backoff = trackBackoffMin
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, trackBackoffMax)
	}
}

// track connects, turns tracking on, activates the cache and reads
// invalidations until the connection fails, stops answering PINGs, or ctx
// ends.
func (c *sessionCache) track(ctx context.Context) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	br := bufio.NewReaderSize(conn, 32<<10)

	call := func(args ...string) (frame, error) {
		_ = conn.SetDeadline(time.Now().Add(c.cfg.Timeout))
		if _, err := conn.Write(appendCommand(nil, args...)); err != nil {
			return frame{}, err
		}
		f, err := readFrame(br)
		if err != nil {
			return frame{}, err
		}
		return f, f.err()
	}
	hello := []string{"HELLO", "3"}
	if c.cfg.Password != "" {
		hello = append(hello, "AUTH", cmp.Or(c.cfg.Username, "default"), c.cfg.Password)
	}
	hello = append(hello, "SETNAME", "lambdarec-session-cache")
	if _, err := call(hello...); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if f, err := call("CLIENT", "TRACKING", "ON", "BCAST", "PREFIX", c.keyPrefix); err != nil {
		return fmt.Errorf("client tracking: %w", err)
	} else if f.str != "OK" {
		return fmt.Errorf("client tracking: answered %q", f.str)
	}
	_ = conn.SetDeadline(time.Time{})
	c.lastReply.Store(time.Now().UnixNano())
	c.epoch.Add(1)
	c.active.Store(true)
	c.log.Info("session cache tracking invalidations", "prefix", c.keyPrefix)

	errc := make(chan error, 1)
	go func() { errc <- c.read(br) }()
	tick := time.NewTicker(trackPingInterval)
	defer tick.Stop()
	ping := appendCommand(nil, "PING")
	for {
		select {
		case err := <-errc:
			return err
		case <-tick.C:
			if silent := time.Since(time.Unix(0, c.lastReply.Load())); silent > c.cfg.Timeout+trackPingInterval {
				c.active.Store(false) // before anything else: stop serving
				_ = conn.Close()
				<-errc
				return fmt.Errorf("no answer for %v", silent.Round(time.Millisecond))
			}
			_ = conn.SetWriteDeadline(time.Now().Add(c.cfg.Timeout))
			if _, err := conn.Write(ping); err != nil {
				c.active.Store(false)
				_ = conn.Close()
				<-errc
				return fmt.Errorf("ping: %w", err)
			}
		}
	}
}

// read handles the frames of the tracking connection until it fails.
func (c *sessionCache) read(br *bufio.Reader) error {
	for {
		f, err := readFrame(br)
		if err != nil {
			c.active.Store(false)
			return err
		}
		c.lastReply.Store(time.Now().UnixNano())
		switch {
		case f.kind == '>' && len(f.elems) == 2 && f.elems[0].str == "invalidate":
			if f.elems[1].null {
				c.reset() // FLUSHALL, FLUSHDB
				c.epoch.Add(1)
				c.active.Store(true)
				continue
			}
			for _, k := range f.elems[1].elems {
				c.invalidate(k.str)
			}
		case f.kind == '>':
			// Other pushes (pub/sub) are not ours.
		case f.err() != nil:
			c.active.Store(false)
			return fmt.Errorf("tracking connection: %w", f.err())
		}
	}
}

func (c *sessionCache) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: c.cfg.Timeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", c.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", c.cfg.Addr, err)
	}
	if c.cfg.TLS == nil {
		return conn, nil
	}
	tc := c.cfg.TLS.Clone()
	if tc.ServerName == "" {
		if host, _, err := net.SplitHostPort(c.cfg.Addr); err == nil {
			tc.ServerName = host
		}
	}
	t := tls.Client(conn, tc)
	hctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	if err := t.HandshakeContext(hctx); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("tls handshake with %s: %w", c.cfg.Addr, err)
	}
	return t, nil
}
