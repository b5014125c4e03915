package clickhouse

import (
	"context"
	"fmt"
)

// Ping checks that ClickHouse answers now, bypassing the batch pointer and
// list caches that let reads go on from memory. The serving layer's /readyz
// and /v1/status use it (serving.Pinger).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.check(); err != nil {
		return err
	}
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("clickhouse store: ping: %w", err)
	}
	return nil
}
