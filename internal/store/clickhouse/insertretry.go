package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
)

// Bounds of retryBufferReplaced: a migration replaces the Buffer table with
// a rename and a create (milliseconds apart); the attempts wait 1.5 s in
// all, far longer than that on a loaded server, and then the error is
// returned as it is (the speed layer writes the views again).
const (
	bufferRetryAttempts = 6
	bufferRetryWait     = 100 * time.Millisecond
)

// retryBufferReplaced runs op, an insert into or a read of the session
// Buffer table ("insert" or "read"), again while it fails because the
// Buffer table is being replaced by a schema migration (another process's:
// see replaceSessionBuffer): up to bufferRetryAttempts attempts, counted in
// Stats.BufferRetries and logged (rate-limited). Inserting a view twice is
// harmless: reads and merges keep one row per (session, offset).
func (s *Store) retryBufferReplaced(ctx context.Context, what string, op func() error) error {
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil || !isBufferReplaced(err) || attempt == bufferRetryAttempts {
			return err
		}
		s.bufferRetries.Add(1)
		s.log.Warn("session buffer table being replaced, retrying", "op", what, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (retry after the session buffer table was replaced: %w)", err, context.Cause(ctx))
		case <-time.After(time.Duration(attempt) * bufferRetryWait):
		}
	}
}

// isBufferReplaced reports whether err is ClickHouse refusing an insert
// because its table does not exist (UNKNOWN_TABLE, 60) or is being dropped
// (TABLE_IS_DROPPED, 218): what an insert meets while a migration drops
// and creates the session Buffer table.
func isBufferReplaced(err error) bool {
	var ex *ch.Exception
	return errors.As(err, &ex) && (ex.Code == 60 || ex.Code == 218)
}
