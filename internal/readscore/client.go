package readscore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// maxResponseBytes bounds a member's answer read by the client (a result
// of a few hundred items with their explanation is tens of KB).
const maxResponseBytes = 1 << 20

// Client is a Scorer over the speed members' HTTP handlers (Handler).
type Client struct {
	urls    []string // each member's POST Path URL
	auth    string   // "Bearer <token>", "" for none
	timeout time.Duration
	hc      *http.Client
	next    atomic.Uint64 // the member the next call starts with
}

// NewClient returns a Scorer that asks the speed members at urls (each a
// base URL, http://host:port of a member's speed.metrics_addr, or the full
// URL of its Path) to score, sending token as a bearer token when not
// empty. A call tries the members in turn, each call starting with the
// next member (round robin), moving on after an error, a timeout or a
// member not ready: at most len(urls) attempts, all within timeout (when
// positive) and ctx; an attempt gets an equal share of the time left to
// the attempts left, so one member that hangs leaves time to the others.
// A bad request (400) is not tried again elsewhere. When every member
// answered not ready, the error wraps ErrNotReady (the caller answers
// from the stored view on any error). hc nil is http.DefaultClient.
func NewClient(urls []string, token string, timeout time.Duration, hc *http.Client) Scorer {
	if hc == nil {
		hc = http.DefaultClient
	}
	c := &Client{timeout: timeout, hc: hc}
	for _, u := range urls {
		u = strings.TrimRight(u, "/")
		if !strings.HasSuffix(u, Path) {
			u += Path
		}
		c.urls = append(c.urls, u)
	}
	if token != "" {
		c.auth = "Bearer " + token
	}
	return c
}

var _ Scorer = (*Client)(nil)

// errBadRequest marks a member's 400: the request's fault, the same at
// every member.
var errBadRequest = errors.New("readscore: bad request")

// ScoreRecent implements Scorer.
func (c *Client) ScoreRecent(ctx context.Context, req Request) (Result, error) {
	if len(c.urls) == 0 {
		return Result{}, fmt.Errorf("%w: no speed members configured", ErrNotReady)
	}
	if err := req.Check(); err != nil {
		return Result{}, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Result{}, err
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	start := int(c.next.Add(1)-1) % len(c.urls)
	var errs []error
	notReady := 0
	for i := range c.urls {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		u := c.urls[(start+i)%len(c.urls)]
		actx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok {
			actx, cancel = context.WithTimeout(ctx, time.Until(dl)/time.Duration(len(c.urls)-i))
		}
		res, err := c.try(actx, u, body)
		cancel()
		if err == nil {
			return res, nil
		}
		if errors.Is(err, errBadRequest) {
			return Result{}, err
		}
		if errors.Is(err, ErrNotReady) {
			notReady++
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
	}
	err = errors.Join(errs...)
	if notReady == len(c.urls) {
		return Result{}, fmt.Errorf("%w: every member: %v", ErrNotReady, err)
	}
	if cerr := ctx.Err(); cerr != nil {
		return Result{}, fmt.Errorf("readscore: no speed member scored: %w: %v", cerr, err)
	}
	return Result{}, fmt.Errorf("readscore: no speed member scored: %v", err) // not ErrNotReady: some member was ready
}

// try asks the member at u once.
func (c *Client) try(ctx context.Context, u string, body []byte) (Result, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return Result{}, err
	}
	hr.Header.Set("Content-Type", "application/json")
	if c.auth != "" {
		hr.Header.Set("Authorization", c.auth)
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return Result{}, fmt.Errorf("read answer: %w", err)
	}
	if len(b) > maxResponseBytes {
		return Result{}, fmt.Errorf("answer over %d bytes", maxResponseBytes)
	}
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		_ = json.Unmarshal(b, &eb) // a proxy's answer may not be ours
		msg := fmt.Sprintf("status %d %s: %s", resp.StatusCode, eb.Error.Code, eb.Error.Message)
		switch {
		case resp.StatusCode == http.StatusServiceUnavailable && eb.Error.Code == CodeNotReady:
			return Result{}, fmt.Errorf("%w (%s)", ErrNotReady, msg)
		case resp.StatusCode == http.StatusBadRequest:
			return Result{}, fmt.Errorf("%w (%s)", errBadRequest, msg)
		}
		return Result{}, errors.New(msg)
	}
	var res Result
	if err := json.Unmarshal(b, &res); err != nil {
		return Result{}, fmt.Errorf("decode answer: %w", err)
	}
	return res, nil
}
