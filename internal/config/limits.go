package config

import "time"

// The memory bounds of the serving role and the speed layer, and the
// thresholds /v1/status judges the layers by. Their fields live in the Serve
// and Speed sections (config.go) and in Status below; their defaults and
// validation live here.

// Defaults of the serve.* limits. They are sized for a serving process of
// about 1 GiB: a request body is buffered, decoded and encoded again before
// Kafka acknowledges it; measured (serving/collector TestCollectorRSSBound),
// the peak resident set grows by about 6× the in-flight bytes, so 128 MiB of
// bodies in flight stay within it.
const (
	DefaultMaxInflightBytes    = 128 << 20
	DefaultMaxInflightRequests = 1024
	DefaultMaxConnections      = 4096
	DefaultReadTimeout         = 15 * time.Second
	DefaultWriteTimeout        = 30 * time.Second
)

// DefaultMaxStateBytes is the default of speed.max_state_bytes: 2 GiB.
const DefaultMaxStateBytes = 2 << 30

// Status configures the thresholds of GET /v1/status: past them a layer is
// reported "degraded" with the reason.
type Status struct {
	// MaxLag is how far behind the stream the archive and the speed layer
	// may be.
	MaxLag MaxLag `yaml:"max_lag"`
}

// MaxLag is a lag threshold, in records and in time; either one past its
// bound makes the layer degraded.
type MaxLag struct {
	// Records is the most records a layer may have yet to process.
	// Default: 100000.
	Records int64 `yaml:"records"`
	// Time is the longest a layer may go without progress while records
	// wait for it. Default: 60s.
	Time time.Duration `yaml:"time"`
}

// DefaultStatus returns the defaults of the status section.
func DefaultStatus() Status {
	return Status{MaxLag: MaxLag{Records: 100_000, Time: time.Minute}}
}

// validateLimits checks the keys of this file.
func (c *Config) validateLimits(bad func(key, format string, args ...any)) {
	s := c.Serve
	if s.MaxInflightBytes < c.Serve.MaxBodyBytes {
		bad("serve.max_inflight_bytes", "must be at least serve.max_body_bytes (%d), got %d", c.Serve.MaxBodyBytes, s.MaxInflightBytes)
	}
	if s.MaxInflightRequests < 1 {
		bad("serve.max_inflight_requests", "must be at least 1, got %d", s.MaxInflightRequests)
	}
	if s.MaxConnections < 1 {
		bad("serve.max_connections", "must be at least 1, got %d", s.MaxConnections)
	}
	if s.ReadTimeout <= 0 {
		bad("serve.read_timeout", "must be positive")
	}
	if s.WriteTimeout <= 0 {
		bad("serve.write_timeout", "must be positive")
	}
	if c.Speed.MaxStateBytes < 1<<20 {
		bad("speed.max_state_bytes", "must be at least 1 MiB (1048576), got %d", c.Speed.MaxStateBytes)
	}
	if c.Status.MaxLag.Records < 1 {
		bad("status.max_lag.records", "must be at least 1, got %d", c.Status.MaxLag.Records)
	}
	if c.Status.MaxLag.Time <= 0 {
		bad("status.max_lag.time", "must be positive")
	}
}
