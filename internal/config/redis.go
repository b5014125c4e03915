package config

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Redis configures the Redis serving store (store.backend: redis), and the
// Redis that holds the real-time view when store.sessions is redis.
type Redis struct {
	// Addr is the host:port of the Redis server (one server or a primary;
	// not Redis Cluster). Default: 127.0.0.1:6379.
	Addr string `yaml:"addr"`
	// Username is the ACL user. Default: none (the default user).
	Username string `yaml:"username"`
	// PasswordFile / PasswordEnv hold the password (AUTH), in a file or an
	// environment variable, never in the configuration. Default: none.
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"`
	// DB is the logical database number. Default: 0.
	DB int `yaml:"db"`
	// TLS secures the connection.
	TLS RedisTLS `yaml:"tls"`
	// Prefix starts every key lambdarec writes, so that several deployments
	// can share one server. Default: "lambdarec:".
	Prefix string `yaml:"prefix"`
	// KeepBatches is how many batch views are kept, the current one
	// included. Default: 2.
	KeepBatches int `yaml:"keep_batches"`
	// RefreshInterval is how often the current batch id is re-read, i.e. how
	// long another process's publish may go unseen. Default: 1s.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// CacheEntries bounds the batch-view lists cached in memory per process.
	// Default: 200000.
	CacheEntries int `yaml:"cache_entries"`
	// SessionCacheEntries bounds the session views cached in memory per
	// process, kept exact by Redis's invalidation announcements (CLIENT
	// TRACKING); 0 turns the cache off. Default: 100000.
	SessionCacheEntries int `yaml:"session_cache_entries"`
	// PipelineSize is the most commands sent in one pipeline (a batch
	// publish, a bulk session upsert). Default: 1000.
	PipelineSize int `yaml:"pipeline_size"`
	// PoolSize is the most connections per process. Default: 10 per CPU.
	PoolSize int `yaml:"pool_size"`
	// Timeout bounds each read and write on a connection. Default: 3s.
	Timeout time.Duration `yaml:"timeout"`
	// SessionTTL is how long a session view lives after its last update.
	// Default: 0, meaning speed.session_timeout.
	SessionTTL time.Duration `yaml:"session_ttl"`
}

// RedisTLS secures the connection to Redis.
type RedisTLS struct {
	// Enabled turns TLS on. Default: false.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs trusted for the server's
	// certificate. Default: the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is checked against the server's certificate. Default: the
	// host of addr.
	ServerName string `yaml:"server_name"`
}

func defaultRedis() Redis {
	return Redis{
		Addr:                "127.0.0.1:6379",
		Prefix:              "lambdarec:",
		KeepBatches:         2,
		RefreshInterval:     time.Second,
		CacheEntries:        200_000,
		SessionCacheEntries: 100_000,
		PipelineSize:        1000,
		Timeout:             3 * time.Second,
	}
}

// RedisSessionTTL is the time a session view lives in Redis after its last
// update: store.redis.session_ttl, else speed.session_timeout.
func (c *Config) RedisSessionTTL() time.Duration {
	if c.Store.Redis.SessionTTL > 0 {
		return c.Store.Redis.SessionTTL
	}
	return c.Speed.SessionTimeout
}

// validateStore checks store.backend, store.sessions and store.redis.
func (c *Config) validateStore() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	switch c.Store.Sessions {
	case "":
	case "redis":
		if c.Store.Backend != "clickhouse" {
			bad("store.sessions", "redis is for store.backend clickhouse (the redis backend holds its sessions already, memory keeps them in process), got backend %q", c.Store.Backend)
		}
	default:
		bad("store.sessions", "must be empty (the backend's own) or redis, got %q", c.Store.Sessions)
	}
	if c.Store.Backend != "redis" && c.Store.Sessions != "redis" {
		return errs
	}
	r := c.Store.Redis
	if _, _, err := net.SplitHostPort(r.Addr); err != nil {
		bad("store.redis.addr", "must be host:port, got %q", r.Addr)
	}
	errs = append(errs, validateSecretRef("store.redis.password", r.PasswordFile, r.PasswordEnv)...)
	if r.DB < 0 {
		bad("store.redis.db", "must not be negative, got %d", r.DB)
	}
	if !r.TLS.Enabled && (r.TLS.CAFile != "" || r.TLS.ServerName != "") {
		errs = append(errs, errors.New("store.redis.tls: settings given but store.redis.tls.enabled is false"))
	}
	if r.Prefix == "" {
		bad("store.redis.prefix", "required (it keeps lambdarec's keys apart)")
	}
	if r.KeepBatches < 2 {
		bad("store.redis.keep_batches", "must be at least 2, got %d", r.KeepBatches)
	}
	if r.RefreshInterval <= 0 {
		bad("store.redis.refresh_interval", "must be positive")
	}
	if r.CacheEntries < 1 {
		bad("store.redis.cache_entries", "must be at least 1")
	}
	if r.SessionCacheEntries < 0 {
		bad("store.redis.session_cache_entries", "must not be negative (0 turns the cache off), got %d", r.SessionCacheEntries)
	}
	if r.PipelineSize < 1 || r.PipelineSize > 100_000 {
		bad("store.redis.pipeline_size", "must be between 1 and 100000, got %d", r.PipelineSize)
	}
	if r.PoolSize < 0 {
		bad("store.redis.pool_size", "must not be negative")
	}
	if r.Timeout <= 0 {
		bad("store.redis.timeout", "must be positive")
	}
	if r.SessionTTL < 0 {
		bad("store.redis.session_ttl", "must not be negative")
	} else if r.SessionTTL > 0 && r.SessionTTL < time.Second {
		bad("store.redis.session_ttl", "must be at least 1s, got %v", r.SessionTTL)
	}
	return errs
}
