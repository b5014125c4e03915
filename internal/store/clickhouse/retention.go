package clickhouse

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// ExpireHot applies the hot tier's retention (retention.hot): session views
// whose event day is before cutoff's are dropped (ExpireSessions: whole day
// partitions), and the publish-history rows of batches published before
// cutoff are deleted, except the KeepBatches newest, which stay whatever
// their age. It returns how many history rows it deleted.
//
// ClickHouse 18.16 (Debian's) has no TTL clause (TTL came in 19.6), so the
// tier's time to live is enforced here, by each maintenance pass, with SQL
// both it and current releases accept: ALTER … DROP PARTITION and ALTER …
// DELETE (a mutation, applied in the background).
func (s *Store) ExpireHot(ctx context.Context, cutoff time.Time) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	if _, err := s.ExpireSessions(ctx, cutoff); err != nil {
		return 0, fmt.Errorf("hot retention: %w", err)
	}
	published, err := s.publishedIDs(ctx)
	if err != nil {
		return 0, fmt.Errorf("hot retention: %w", err)
	}
	keep := published[:min(len(published), s.cfg.KeepBatches)]
	quoted := make([]string, len(keep))
	for i, id := range keep {
		quoted[i] = quote(id)
	}
	where := `published_ns < ` + fmt.Sprint(cutoff.UnixNano())
	if len(quoted) > 0 {
		where += ` AND batch_id NOT IN (` + strings.Join(quoted, ", ") + `)`
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, `SELECT count() FROM `+tableBatches+` WHERE `+where).Scan(&n); err != nil {
		return 0, fmt.Errorf("hot retention: count old batches: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	if err := s.conn.Exec(ctx, `ALTER TABLE `+tableBatches+` DELETE WHERE `+where); err != nil {
		return 0, fmt.Errorf("hot retention: delete old batches: %w", err)
	}
	s.log.Info("batch history past hot retention deleted", "rows", n, "before", cutoff.UTC().Format(time.RFC3339))
	return int64(n), nil
}
