package config

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// Maintenance configures Iceberg table maintenance (`lambdarec maintain`, and
// its schedule inside `batch schedule` and `dev`).
type Maintenance struct {
	// Cron is the schedule of maintenance inside `batch schedule` and `dev`
	// (5 fields or a descriptor such as "@every 1h"); empty turns the
	// schedule off. Default: "@every 1h" (`dev` uses "@every 5m").
	Cron string `yaml:"cron"`
	// SnapshotRetention is how long snapshots are kept after a newer one
	// replaced them; older ones are expired (never the current one, never
	// one a running batch has pinned). Default: 1h.
	SnapshotRetention time.Duration `yaml:"snapshot_retention"`
	// TargetFileSize is the size, in bytes, that compaction packs the small
	// data files of each day partition of events into. Default: 128 MiB.
	TargetFileSize int64 `yaml:"target_file_size"`
	// OrphanMinAge is how old a file that no snapshot references must be
	// before it is deleted; younger ones may belong to a commit in progress.
	// At least OrphanMinAgeFloor unless OrphanMinAgeForce. Default: 1h.
	OrphanMinAge time.Duration `yaml:"orphan_min_age"`
	// OrphanMinAgeForce accepts an OrphanMinAge below OrphanMinAgeFloor
	// (still at least 1s): for a lake that only this process writes, or a
	// test. Default: false.
	OrphanMinAgeForce bool `yaml:"orphan_min_age_force"`
	// PinMaxAge is how long a batch run's pin on a snapshot is honoured;
	// older pins are of runs that died, and are removed. Default: 24h.
	PinMaxAge time.Duration `yaml:"pin_max_age"`
}

// Retention configures how long each tier keeps its data.
type Retention struct {
	// Events is how long the raw events table keeps events: whole day
	// partitions older than this (by event time) are deleted by
	// maintenance. Default: 61320h (7 years).
	Events time.Duration `yaml:"events"`
	// Hot is how long the ClickHouse serving tables keep session views
	// (by event day). Default: 168h (7 days).
	Hot time.Duration `yaml:"hot"`
}

// OrphanMinAgeFloor is the least maintenance.orphan_min_age accepted
// without maintenance.orphan_min_age_force. An archive or batch run in
// another process writes its data files before it commits them, and its
// commit may wait behind conflicts, retries and a slow catalog; a file
// older than orphan_min_age that no snapshot references yet is deleted by
// the orphan step, and that process's commit, which the step's commit lock
// does not hold, then lands a table referencing a missing file. The
// longest such wait is a batch run's (its view files are written from its
// first minutes to its commit: 25 s at 10M events, longer on larger lakes);
// the archive's commit retries end within about 20 s. The floor leaves
// minutes of margin over both.
const OrphanMinAgeFloor = 15 * time.Minute

func defaultMaintenance() Maintenance {
	return Maintenance{
		Cron:              "@every 1h",
		SnapshotRetention: time.Hour,
		TargetFileSize:    128 << 20,
		OrphanMinAge:      time.Hour,
		PinMaxAge:         24 * time.Hour,
	}
}

func defaultRetention() Retention {
	return Retention{Events: 7 * 365 * 24 * time.Hour, Hot: 7 * 24 * time.Hour}
}

// validateMaintenance checks the maintenance and retention sections.
func (c *Config) validateMaintenance() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	m := c.Maintenance
	if m.Cron != "" {
		if _, err := cron.ParseStandard(m.Cron); err != nil {
			bad("maintenance.cron", "%v", err)
		}
	}
	if m.SnapshotRetention < time.Second {
		bad("maintenance.snapshot_retention", "must be at least 1s, got %v", m.SnapshotRetention)
	}
	if m.TargetFileSize < 1<<20 {
		bad("maintenance.target_file_size", "must be at least 1048576 (1 MiB), got %d", m.TargetFileSize)
	}
	switch {
	case m.OrphanMinAge < time.Second:
		bad("maintenance.orphan_min_age", "must be at least 1s, got %v", m.OrphanMinAge)
	case m.OrphanMinAge < OrphanMinAgeFloor && !m.OrphanMinAgeForce:
		bad("maintenance.orphan_min_age", "%v is below the safe floor of %v: a file another process (archive, batch run) has written but not yet committed could be deleted as an orphan; set maintenance.orphan_min_age_force: true only if no other process writes to the lake", m.OrphanMinAge, OrphanMinAgeFloor)
	}
	if m.PinMaxAge < time.Minute {
		bad("maintenance.pin_max_age", "must be at least 1m, got %v", m.PinMaxAge)
	}
	if c.Retention.Events < 24*time.Hour {
		bad("retention.events", "must be at least 24h (whole days are dropped), got %v", c.Retention.Events)
	}
	if c.Retention.Hot < 24*time.Hour {
		bad("retention.hot", "must be at least 24h (whole days are dropped), got %v", c.Retention.Hot)
	}
	return errs
}
