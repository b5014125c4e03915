package maintain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
)

// MetadataVersionsKept is how many previous metadata.json files each table
// keeps (write.metadata.previous-versions-max); older ones are deleted by
// the commit that passes it.
const MetadataVersionsKept = 10

// OperationProperty names, in the summary of each snapshot a pass commits,
// the step that committed it.
const OperationProperty = "maintenance-operation"

// ErrBusy is returned by RunOnce while another pass of the same Maintainer
// is running.
var ErrBusy = errors.New("a maintenance pass is already running")

// HotStore is the serving store's side of hot retention: it drops session
// views whose newest event is before cutoff (store.Store has it).
type HotStore interface {
	ExpireSessions(ctx context.Context, cutoff time.Time) (int64, error)
}

// Config configures a Maintainer.
type Config struct {
	// Lake holds the tables. Required.
	Lake *lakehouse.Lakehouse
	// Maintenance and Retention are the configuration sections; zero values
	// take their defaults (config.Default()).
	Maintenance config.Maintenance
	Retention   config.Retention
	// Store, when set, gets its hot retention applied by each pass.
	Store HotStore
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Maintainer runs maintenance passes. It is safe for concurrent use; passes
// never overlap.
type Maintainer struct {
	cfg Config
	log *slog.Logger
	mu  sync.Mutex // held during a pass

	// orphansPlanned, when set (by tests), runs after the orphan step found
	// orphans and before it deletes any.
	orphansPlanned func()
}

// New returns a Maintainer for cfg.
func New(cfg Config, log *slog.Logger) (*Maintainer, error) {
	if cfg.Lake == nil {
		return nil, errors.New("maintain: lakehouse is required")
	}
	def := config.Default()
	if cfg.Maintenance == (config.Maintenance{}) {
		cfg.Maintenance = def.Maintenance
	}
	if cfg.Retention == (config.Retention{}) {
		cfg.Retention = def.Retention
	}
	check := def
	check.Maintenance, check.Retention = cfg.Maintenance, cfg.Retention
	if err := check.Validate(); err != nil {
		return nil, fmt.Errorf("maintain: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Maintainer{cfg: cfg, log: log}, nil
}

// TableReport is what a pass did to one table.
type TableReport struct {
	Table string
	// Snapshots before and after the pass.
	SnapshotsBefore, SnapshotsAfter int
	// DataFilesBefore and DataFilesAfter count the data files of the
	// current snapshot.
	DataFilesBefore, DataFilesAfter int
	// Records in the current snapshot after the pass.
	Records int64
	// PinsRemoved are stale pins removed; Pinned are pins honoured.
	PinsRemoved, Pinned int
	// DaysDropped counts the day partitions removed by retention, and
	// RetentionFilesDeleted their data files.
	RetentionFilesDeleted int
	// CompactedFiles were rewritten into CompactedInto files;
	// CompactedBytes is the size of the files rewritten (the write
	// amplification of the pass).
	CompactedFiles, CompactedInto int
	CompactedBytes                int64
	// ManifestsRewritten were merged into ManifestsAdded.
	ManifestsRewritten, ManifestsAdded int
	// SnapshotsExpired by this pass.
	SnapshotsExpired int
	// OrphansDeleted are unreferenced files deleted, OrphanBytes their size.
	OrphansDeleted int
	OrphanBytes    int64
	// MetadataFile is the newest metadata.json and MetadataBytes its size
	// (when the warehouse is local).
	MetadataFile  string
	MetadataBytes int64
}

// Report is what a pass did.
type Report struct {
	Tables []TableReport
	// HotExpired is what the serving store's hot retention removed: batch
	// history rows (ClickHouse) or session views (in-process); -1 when the
	// store does not count them.
	HotExpired int64
	Duration   time.Duration
}

// RunOnce runs one maintenance pass over every table of the namespace. It
// returns ErrBusy, doing nothing, while another pass runs. A step that fails
// on one table does not stop the others: the errors are joined.
func (m *Maintainer) RunOnce(ctx context.Context) (*Report, error) {
	if !m.mu.TryLock() {
		return nil, ErrBusy
	}
	defer m.mu.Unlock()
	start := m.cfg.Now()
	rep := &Report{}
	names, err := m.tables(ctx)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, name := range names {
		tr, err := m.table(ctx, name)
		rep.Tables = append(rep.Tables, tr)
		if err != nil {
			errs = append(errs, fmt.Errorf("maintain %s: %w", name, err))
		}
	}
	if m.cfg.Store != nil {
		cutoff := m.cfg.Now().Add(-m.cfg.Retention.Hot)
		expire := m.cfg.Store.ExpireSessions
		if h, ok := m.cfg.Store.(interface {
			ExpireHot(context.Context, time.Time) (int64, error)
		}); ok {
			expire = h.ExpireHot // the ClickHouse store: sessions and batch history
		}
		n, err := expire(ctx, cutoff)
		if err != nil {
			errs = append(errs, fmt.Errorf("maintain serving store: %w", err))
		}
		rep.HotExpired = n
	}
	rep.Duration = m.cfg.Now().Sub(start)
	return rep, errors.Join(errs...)
}

// tables lists the tables of the namespace, events first.
func (m *Maintainer) tables(ctx context.Context) ([]string, error) {
	var names []string
	for ident, err := range m.cfg.Lake.Catalog().ListTables(ctx, m.cfg.Lake.Namespace()) {
		if errors.Is(err, catalog.ErrNoSuchNamespace) {
			return nil, nil // nothing created yet
		}
		if err != nil {
			return nil, fmt.Errorf("maintain: list tables of %s: %w", strings.Join(m.cfg.Lake.Namespace(), "."), err)
		}
		names = append(names, ident[len(ident)-1])
	}
	slices.SortFunc(names, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == lakehouse.EventsTable:
			return -1
		case b == lakehouse.EventsTable:
			return 1
		}
		return strings.Compare(a, b)
	})
	return names, nil
}

// table runs every step on table name.
func (m *Maintainer) table(ctx context.Context, name string) (TableReport, error) {
	tr := TableReport{Table: name}
	log := m.log.With("table", name)
	tbl, err := m.cfg.Lake.LoadTable(ctx, name)
	if err != nil {
		return tr, err
	}
	tr.SnapshotsBefore = len(tbl.Metadata().Snapshots())
	tr.DataFilesBefore, _, _ = currentFiles(ctx, tbl)
	events := name == lakehouse.EventsTable

	var errs []error
	step := func(what string, fn func() error) {
		if ctx.Err() != nil {
			return
		}
		start := time.Now()
		err := fn()
		log.Debug("maintenance step done", "step", what, "ms", time.Since(start).Milliseconds())
		if err != nil {
			log.Warn("maintenance step", "step", what, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	step("pins", func() error { return m.pins(ctx, name, &tr) })
	if events {
		step("retention", func() error { return m.retention(ctx, &tr) })
		step("compaction", func() error { return m.compact(ctx, name, &tr) })
	}
	step("manifests and expiry", func() error { return m.manifestsAndExpiry(ctx, name, &tr) })
	step("orphans", func() error { return m.orphans(ctx, name, &tr) })

	if tbl, err = m.cfg.Lake.LoadTable(ctx, name); err == nil {
		tr.SnapshotsAfter = len(tbl.Metadata().Snapshots())
		tr.DataFilesAfter, tr.Records, _ = currentFiles(ctx, tbl)
		tr.MetadataFile = tbl.MetadataLocation()
		tr.MetadataBytes = localSize(tr.MetadataFile)
	}
	log.Info("table maintained",
		"snapshots_before", tr.SnapshotsBefore, "snapshots_after", tr.SnapshotsAfter,
		"data_files_before", tr.DataFilesBefore, "data_files_after", tr.DataFilesAfter,
		"expired", tr.SnapshotsExpired, "compacted", tr.CompactedFiles, "compacted_into", tr.CompactedInto,
		"compacted_bytes", tr.CompactedBytes,
		"manifests_rewritten", tr.ManifestsRewritten, "orphans", tr.OrphansDeleted,
		"retention_files", tr.RetentionFilesDeleted, "pins", tr.Pinned, "pins_removed", tr.PinsRemoved)
	return tr, errors.Join(errs...)
}

// currentFiles counts the data files and records of tbl's current snapshot
// from its summary.
func currentFiles(_ context.Context, tbl *table.Table) (files int, records int64, err error) {
	snap := tbl.CurrentSnapshot()
	if snap == nil || snap.Summary == nil {
		return 0, 0, nil
	}
	f, _ := strconv.Atoi(snap.Summary.Properties["total-data-files"])
	r, _ := strconv.ParseInt(snap.Summary.Properties["total-records"], 10, 64)
	return f, r, nil
}

// commitOpts are the retry settings of maintenance commits. They race the
// archive's, which may come every 100 ms: a maintenance commit is rebuilt on
// the reloaded table at once (the expensive work, such as compacted files,
// is not redone), so it lands in the gap while the archive decodes and
// writes its next files instead of backing off past it.
var commitOpts = lakehouse.CommitOptions{MaxAttempts: 50, MinBackoff: time.Millisecond, MaxBackoff: 50 * time.Millisecond, Fresh: true}
