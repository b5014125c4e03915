// Package backend owns the choice of serving-store backend: Open builds the
// store.Store that the configuration names (store.backend, store.sessions),
// so that commands need not import every backend themselves.
package backend

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/clickhouse"
	"github.com/lambdarec/lambdarec/internal/store/redis"
)

// Open returns the serving store configured by cfg: the in-process store for
// store.backend "memory", the ClickHouse store (connected, schema migrated)
// for "clickhouse", the Redis store for "redis"; with store.sessions "redis"
// the real-time view goes to Redis and the batch view to the backend. The
// caller closes it.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger) (store.Store, error) {
	return open(ctx, cfg, log, false)
}

// OpenServing is Open for a role that answers while the store is away (serve):
// the ClickHouse store is returned without waiting for its server, connects
// and migrates in the background, and fails every call until then
// (clickhouse.Config.Background), so that readiness reports it instead of the
// process exiting. Configuration errors still fail at once.
func OpenServing(ctx context.Context, cfg config.Config, log *slog.Logger) (store.Store, error) {
	return open(ctx, cfg, log, true)
}

func open(ctx context.Context, cfg config.Config, log *slog.Logger, background bool) (store.Store, error) {
	st, err := openBackend(ctx, cfg, log, background)
	if err != nil || cfg.Store.Sessions != "redis" {
		return st, err
	}
	sessions, err := openRedis(ctx, cfg, log)
	if err != nil {
		return nil, errors.Join(err, st.Close())
	}
	return &split{Store: st, sessions: sessions}, nil
}

func openBackend(ctx context.Context, cfg config.Config, log *slog.Logger, background bool) (store.Store, error) {
	switch cfg.Store.Backend {
	case "", "memory":
		opts := []store.MemoryOpt{store.MemorySessionBytes(cfg.Store.Memory.MaxSessionBytes)}
		if log != nil {
			opts = append(opts, store.MemoryLog(log))
		}
		return store.NewMemory(opts...), nil
	case "redis":
		return openRedis(ctx, cfg, log)
	case "clickhouse":
		c := cfg.ClickHouse
		password, err := config.ReadSecret(c.PasswordFile, c.PasswordEnv)
		if err != nil {
			return nil, fmt.Errorf("clickhouse password: %w", err)
		}
		tlsCfg, err := clickhouseTLS(c.TLS)
		if err != nil {
			return nil, err
		}
		s, err := clickhouse.New(ctx, clickhouse.Config{
			DSN:             c.DSN,
			CacheEntries:    c.CacheEntries,
			RefreshInterval: c.RefreshInterval,
			KeepBatches:     c.KeepBatches,
			Username:        c.Username,
			Password:        password,
			TLS:             tlsCfg,
			Background:      background,
		}, log)
		if err != nil {
			return nil, fmt.Errorf("open serving store: %w", err)
		}
		return s, nil
	default:
		return nil, fmt.Errorf("open serving store: unknown backend %q", cfg.Store.Backend)
	}
}

func openRedis(ctx context.Context, cfg config.Config, log *slog.Logger) (*redis.Store, error) {
	r := cfg.Store.Redis
	password, err := config.ReadSecret(r.PasswordFile, r.PasswordEnv)
	if err != nil {
		return nil, fmt.Errorf("store.redis password: %w", err)
	}
	tlsCfg, err := redisTLS(r.TLS)
	if err != nil {
		return nil, err
	}
	s, err := redis.New(ctx, redis.Config{
		Addr:            r.Addr,
		Username:        r.Username,
		Password:        password,
		DB:              r.DB,
		TLS:             tlsCfg,
		Prefix:          r.Prefix,
		KeepBatches:     r.KeepBatches,
		RefreshInterval: r.RefreshInterval,
		CacheEntries:    r.CacheEntries,
		PipelineSize:    r.PipelineSize,
		// 0 in the configuration turns the cache off; in redis.Config, 0
		// takes the default and negative turns it off.
		SessionCacheEntries: cmp.Or(r.SessionCacheEntries, -1),
		PoolSize:            r.PoolSize,
		Timeout:             r.Timeout,
		SessionTTL:          cfg.RedisSessionTTL(),
	}, log)
	if err != nil {
		return nil, fmt.Errorf("open serving store: %w", err)
	}
	return s, nil
}
