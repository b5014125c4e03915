package config

// DefaultBrokerRetentionBytes is the default of broker.retention_bytes:
// 64 MiB per partition. At dev's default 50 events/s that is days of
// events; retention never deletes a record the archive has not committed
// past (the speed layer's replay horizon only when it must, reported), and a
// partition holding twice it refuses produce requests until the archive
// catches up (internal/broker/retention.go),
// so the embedded broker of `lambdarec dev` and `lambdarec broker` holds at
// most about 2 × 64 MiB per partition, in memory or in broker.data_dir.
const DefaultBrokerRetentionBytes = 64 << 20

// validateBroker checks broker.retention_bytes (the field lives in the
// Broker section, config.go).
func (c *Config) validateBroker(bad func(key, format string, args ...any)) {
	if r := c.Broker.RetentionBytes; r != 0 && r < 1<<20 {
		bad("broker.retention_bytes", "must be 0 (keep every record) or at least 1 MiB (1048576), got %d", r)
	}
}
