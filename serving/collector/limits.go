package collector

import (
	"errors"
	"io"
	"sync/atomic"
)

// CodeOverloaded is the error code of a request refused because the
// collector already holds serve.max_inflight_requests requests or
// serve.max_inflight_bytes of request bodies (503, with Retry-After).
const CodeOverloaded = "overloaded"

// budget bounds what the collector holds at once: requests being handled and
// the bytes of their bodies. A request with a Content-Length reserves its
// whole body before a byte is read, so a refused body is never read; a
// chunked body reserves its bytes as they are read. Reservations are
// returned when the request is answered.
type budget struct {
	maxBytes, maxReqs int64
	bytes, reqs       atomic.Int64
}

func (b *budget) acquireRequest() bool {
	if b.reqs.Add(1) > b.maxReqs {
		b.reqs.Add(-1)
		return false
	}
	return true
}

func (b *budget) releaseRequest() { b.reqs.Add(-1) }

func (b *budget) acquireBytes(n int64) bool {
	if b.bytes.Add(n) > b.maxBytes {
		b.bytes.Add(-n)
		return false
	}
	return true
}

func (b *budget) releaseBytes(n int64) { b.bytes.Add(-n) }

// errOverloaded ends the read of a chunked body whose bytes no longer fit in
// the budget.
var errOverloaded = errors.New("in-flight body bytes exhausted")

// meteredBody reserves the bytes of a body of unknown length as they are
// read; held is what it reserved.
type meteredBody struct {
	r    io.Reader
	b    *budget
	held int64
}

func (m *meteredBody) Read(p []byte) (int, error) {
	// Reserve before reading, so the bytes in the buffer are always
	// covered; what was not filled is returned.
	if !m.b.acquireBytes(int64(len(p))) {
		return 0, errOverloaded
	}
	n, err := m.r.Read(p)
	m.b.releaseBytes(int64(len(p) - n))
	m.held += int64(n)
	return n, err
}
