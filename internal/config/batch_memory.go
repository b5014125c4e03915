package config

// DefaultBatchMaxMemory is the default of batch.max_memory: 1 GiB.
const DefaultBatchMaxMemory = 1 << 30

// validateBatchMemory checks batch.max_memory (the field lives in the Batch
// section, config.go).
func (c *Config) validateBatchMemory(bad func(key, format string, args ...any)) {
	if c.Batch.MaxMemory < 64<<20 {
		bad("batch.max_memory", "must be at least 64 MiB (67108864), got %d", c.Batch.MaxMemory)
	}
}
