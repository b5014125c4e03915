package batch

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/lambdarec/lambdarec/internal/model"
)

// TestSpanWriter checks the session_spans write that runs beside the build
// (spanWriter): every span added is committed as the batch's rows, chunks
// and the last partial one; an aborted write (the build failed) commits
// nothing and returns; a write that failed before reading any chunk (here:
// no session_spans table) does not block the build's later spans, more
// chunks of them than wait for it.
func TestSpanWriter(t *testing.T) {
	ctx := context.Background()
	lake := testLake(t)
	if err := ensureTables(ctx, lake); err != nil {
		t.Fatal(err)
	}
	r := &Runner{cfg: Config{Lake: lake, Mem: memory.DefaultAllocator}, log: discard}

	// Three parts, the second larger than a chunk, the third empty.
	want := map[string]model.Span{}
	var parts [][]sessionSpan
	for p, n := range []int{10, spanChunk + 7, 0} {
		part := []sessionSpan{}
		for i := range n {
			s := fmt.Sprintf("p%d-s%d", p, i)
			sp := model.Span{First: int64(p*1e9 + i), Last: int64(p*1e9 + 2*i + 1)}
			part = append(part, sessionSpan{s, sp})
			want[s] = sp
		}
		parts = append(parts, part)
	}
	run := &Run{BatchID: "b1"}
	sw := r.startSpans(ctx, run, discard)
	for _, p := range parts {
		for _, s := range p {
			sw.add(s.session, s.span)
		}
	}
	if err := <-sw.finish(); err != nil {
		t.Fatal(err)
	}
	// The write's context ends with it: a long-lived run context (batch
	// schedule's) must not keep one child per run.
	<-sw.ended
	if sw.ctx.Err() == nil {
		t.Fatal("the span write's context is still live after the write returned")
	}
	got, rows, err := loadSpans(ctx, lake, Run{BatchID: "b1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rows != int64(len(want)) || !maps.Equal(got, want) {
		t.Fatalf("session_spans of b1: %d rows, %d sessions, want %d (equal: %v)", rows, len(got), len(want), maps.Equal(got, want))
	}

	// Aborted: nothing of b2 is committed.
	sw = r.startSpans(ctx, &Run{BatchID: "b2"}, discard)
	for _, s := range parts[1] {
		sw.add(s.session, s.span)
	}
	sw.abort()
	if _, rows, err := loadSpans(ctx, lake, Run{BatchID: "b2"}, nil); err != nil || rows != 0 {
		t.Fatalf("aborted write of b2: %d rows committed (err %v), want none", rows, err)
	}

	// A failed write: add returns although nothing reads the parts.
	bare := &Runner{cfg: Config{Lake: testLake(t), Mem: memory.DefaultAllocator}, log: discard}
	sw = bare.startSpans(ctx, &Run{BatchID: "b3"}, discard)
	added := make(chan struct{})
	go func() {
		defer close(added)
		for i := range (spanChunksAhead + 2) * spanChunk {
			sw.add("s", model.Span{First: int64(i), Last: int64(i)})
		}
	}()
	select {
	case <-added:
	case <-time.After(30 * time.Second):
		t.Fatal("add blocked after the write failed")
	}
	if err := <-sw.finish(); err == nil {
		t.Fatal("a write into a missing table succeeded")
	}
}
