// Package loadgen owns lambdarec's HTTP load generator and the serving
// benchmark built on it: Run drives a listening server with a fixed number of
// keep-alive connections and measures throughput and latency percentiles;
// Seed fills a serving store with a synthetic view; Compare serves the read
// API beside a bare net/http handler and measures both from a second process
// (see cmd/lambdarec's "bench serve" and "bench load").
//
// The generator is closed-loop (each connection sends its next request when
// the previous answer is read, like wrk), speaks HTTP/1.1 over plain TCP, and
// reads answers with net/http's parser, so that it spends little CPU per
// request next to the server it measures on the same machine.
package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a load run. Zero values take the defaults.
type Config struct {
	// Targets are the URLs requested, cycled through by every connection
	// (each starts at a different one). All must share one scheme://host.
	// Required.
	Targets []string
	// Connections is the number of concurrent keep-alive connections, each
	// with one request in flight. Default: 16.
	Connections int
	// Duration is how long requests are measured. Default: 10s.
	Duration time.Duration
	// Warmup runs before the measurement, unmeasured. Default: 2s.
	Warmup time.Duration
	// Timeout bounds one request; a request past it counts as an error and
	// its connection is replaced. Default: 5s.
	Timeout time.Duration
}

func (c *Config) validate() (addr string, reqs [][]byte, err error) {
	if len(c.Targets) == 0 {
		return "", nil, errors.New("loadgen: no targets")
	}
	if c.Connections == 0 {
		c.Connections = 16
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Warmup == 0 {
		c.Warmup = 2 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	switch {
	case c.Connections < 0:
		return "", nil, fmt.Errorf("loadgen: connections %d < 0", c.Connections)
	case c.Duration < 0 || c.Warmup < 0 || c.Timeout < 0:
		return "", nil, errors.New("loadgen: negative duration")
	}
	for _, t := range c.Targets {
		u, err := url.Parse(t)
		if err != nil {
			return "", nil, fmt.Errorf("loadgen: target %q: %w", t, err)
		}
		if u.Scheme != "http" {
			return "", nil, fmt.Errorf("loadgen: target %q: only http:// is supported", t)
		}
		if addr == "" {
			addr = u.Host
		} else if u.Host != addr {
			return "", nil, fmt.Errorf("loadgen: target %q: every target must be on %s", t, addr)
		}
		reqs = append(reqs, fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lambdarec-loadgen\r\n\r\n", u.RequestURI(), u.Host))
	}
	return addr, reqs, nil
}

// Result is the outcome of a load run.
type Result struct {
	// Requests answered with any status during the measurement.
	Requests int64 `json:"requests"`
	// AllRequests are the requests answered from the start, the warmup's
	// included: what the CPU time of the whole run is spread over.
	AllRequests int64 `json:"all_requests"`
	// Non2xx of them had a status outside 200–299.
	Non2xx int64 `json:"non_2xx"`
	// Errors are requests that got no answer (connection errors, timeouts).
	Errors int64 `json:"errors"`
	// Seconds is the measured duration.
	Seconds float64 `json:"seconds"`
	// RPS is Requests per second.
	RPS float64 `json:"rps"`
	// Latency percentiles and maximum of answered requests, in milliseconds.
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	// BodyBytes is the mean response body size.
	BodyBytes float64 `json:"body_bytes"`
	// Connections used.
	Connections int `json:"connections"`
}

// worker state, one per connection.
type worker struct {
	lat    []time.Duration // latencies measured
	all    int64           // answers, measured or not
	non2xx int64
	errs   int64
	body   int64
}

// Run drives the targets until the warmup and the duration have passed or
// ctx ends, and returns what it measured. Errors of single requests are
// counted, not returned; Run fails only when no request got an answer.
func Run(ctx context.Context, cfg Config) (Result, error) {
	addr, reqs, err := cfg.validate()
	if err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var measuring atomic.Bool
	workers := make([]*worker, cfg.Connections)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{lat: make([]time.Duration, 0, 1<<14)}
		workers[i] = w
		wg.Go(func() { w.run(ctx, addr, reqs, i*len(reqs)/cfg.Connections, cfg.Timeout, &measuring) })
	}
	var start time.Time
	select {
	case <-ctx.Done():
	case <-time.After(cfg.Warmup):
		measuring.Store(true)
		start = time.Now()
		select {
		case <-ctx.Done():
		case <-time.After(cfg.Duration):
		}
	}
	measuring.Store(false)
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	if start.IsZero() {
		return Result{}, fmt.Errorf("loadgen: stopped during warmup: %w", context.Cause(ctx))
	}

	var all []time.Duration
	res := Result{Seconds: elapsed.Seconds(), Connections: cfg.Connections}
	var body int64
	for _, w := range workers {
		all = append(all, w.lat...)
		res.AllRequests += w.all
		res.Non2xx += w.non2xx
		res.Errors += w.errs
		body += w.body
	}
	res.Requests = int64(len(all))
	if res.Requests == 0 {
		return res, fmt.Errorf("loadgen: no request to %s was answered (%d errors)", addr, res.Errors)
	}
	res.RPS = float64(res.Requests) / res.Seconds
	res.BodyBytes = float64(body) / float64(res.Requests)
	slices.Sort(all)
	pct := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(all)))) - 1
		return ms(all[max(0, min(i, len(all)-1))])
	}
	res.P50, res.P90, res.P99, res.P999 = pct(0.50), pct(0.90), pct(0.99), pct(0.999)
	res.Max = ms(all[len(all)-1])
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// run sends requests on one connection, reconnecting after errors, until
// ctx ends.
func (w *worker) run(ctx context.Context, addr string, reqs [][]byte, next int, timeout time.Duration, measuring *atomic.Bool) {
	var d net.Dialer
	for ctx.Err() == nil {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			if measuring.Load() {
				w.errs++
			}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		// Closing the connection when ctx ends unblocks a pending read.
		stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
		next = w.serve(ctx, conn, reqs, next, timeout, measuring)
		stop()
		_ = conn.Close()
	}
}

// serve runs requests on conn until an error or ctx ends, and returns the
// index of the next target.
func (w *worker) serve(ctx context.Context, conn net.Conn, reqs [][]byte, next int, timeout time.Duration, measuring *atomic.Bool) int {
	br := bufio.NewReaderSize(conn, 16<<10)
	for ctx.Err() == nil {
		req := reqs[next%len(reqs)]
		next++
		t0 := time.Now()
		_ = conn.SetDeadline(t0.Add(timeout))
		m := measuring.Load()
		if _, err := conn.Write(req); err != nil {
			if m && ctx.Err() == nil {
				w.errs++
			}
			return next
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if m && ctx.Err() == nil {
				w.errs++
			}
			return next
		}
		n, err := io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			if m && ctx.Err() == nil {
				w.errs++
			}
			return next
		}
		lat := time.Since(t0)
		w.all++
		// Count only requests that started and ended inside the window.
		if m && measuring.Load() {
			w.lat = append(w.lat, lat)
			w.body += n
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				w.non2xx++
			}
		}
		if resp.Close {
			return next
		}
	}
	return next
}
