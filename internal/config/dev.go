package config

// Memory bounds of the in-process serving store and of `lambdarec dev`.

// StoreMemory configures the in-process serving store (store.backend:
// memory).
type StoreMemory struct {
	// MaxSessionBytes bounds the estimated bytes of the session views it
	// holds; past it the oldest-updated views are evicted (their sessions
	// are answered from the batch view until the speed layer writes them
	// again). Default: DefaultStoreMemorySessionBytes.
	MaxSessionBytes int64 `yaml:"max_session_bytes"`
}

// DefaultStoreMemorySessionBytes is the default of
// store.memory.max_session_bytes: 256 MiB, about 100,000 session views of
// 20 items with their explanations.
const DefaultStoreMemorySessionBytes = 256 << 20

// Dev configures `lambdarec dev`, every role in one process.
type Dev struct {
	// MaxMemory is dev's soft memory limit, in bytes (the Go runtime's,
	// debug.SetMemoryLimit): the collector works harder as the heap nears
	// it. It bounds nothing by itself; dev's bounds are the serving
	// store's, the speed layer's and the embedded broker's (see
	// DevSpeedMaxStateBytes). 0: none. Default: DefaultDevMaxMemory.
	MaxMemory int64 `yaml:"max_memory"`
}

// DefaultDevMaxMemory is the default of dev.max_memory: 1.5 GiB.
const DefaultDevMaxMemory = 1536 << 20

// The speed layer's bounds in `lambdarec dev` when speed.max_state_bytes
// and speed.max_sessions are left at their defaults, which are sized for a
// speed member with a machine of its own: in dev every role shares one
// process (a laptop's), so dev holds less. Past them the least recently
// active sessions are evicted (speed/doc.go: a session evicted while live
// is rebuilt from its later events only).
const (
	DevSpeedMaxStateBytes = 256 << 20
	DevSpeedMaxSessions   = 200_000
)

// DevRescoreInterval is speed.rescore_interval in `lambdarec dev` when left
// at its default (DefaultRescoreInterval): rescoring off. Dev's serving
// layer scores every read of a live session at read time through its
// in-process speed layer (internal/readscore), so rescoring would only
// refresh the stored views it falls back to, at about a fifth of the views
// scored at 50,000 events/s and an index of the rows every view read.
const DevRescoreInterval = 0

// The fetch bounds of dev's in-process consumers (kafka.fetch_max_bytes,
// kafka.fetch_max_partition_bytes) unless set: a backlog of millions of
// records is read 1 MiB (compressed) at a time instead of up to 1 MiB per
// partition, so the speed layer's and the archive's buffered fetches hold a
// few MiB decompressed rather than tens each.
const (
	DevFetchMaxBytes          = 1 << 20
	DevFetchMaxPartitionBytes = 256 << 10
)

// DevBatchMaxMemory is batch.max_memory in `lambdarec dev` when left at its
// default (DefaultBatchMaxMemory): a full recompute there shares the
// process with every other role.
const DevBatchMaxMemory = 512 << 20

// validateDev checks store.memory and dev (the fields live in the Store
// section and Config, config.go).
func (c *Config) validateDev(bad func(key, format string, args ...any)) {
	if n := c.Store.Memory.MaxSessionBytes; n < 1<<20 {
		bad("store.memory.max_session_bytes", "must be at least 1 MiB (1048576), got %d", n)
	}
	if n := c.Dev.MaxMemory; n != 0 && n < 256<<20 {
		bad("dev.max_memory", "must be 0 (no limit) or at least 256 MiB (268435456), got %d", n)
	}
}

// DevScoreViews is speed.score_views in `lambdarec dev` when not set by the
// configuration file or the environment: views are not scored. Dev's
// serving layer scores every read of a live session at read time through
// its in-process speed layer, so the items a flush would score are never
// served; the views keep the inputs a read is scored from.
const DevScoreViews = false
