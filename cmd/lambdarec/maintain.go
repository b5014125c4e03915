package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/lambdarec/lambdarec/batch/maintain"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/internal/store/backend"
)

func init() {
	register("maintain", command{
		summary: "one pass of Iceberg table maintenance and retention: expire snapshots, compact, merge manifests, delete orphans, drop expired days",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			fs.StringVar(&cfg.Iceberg.Warehouse, "warehouse", cfg.Iceberg.Warehouse, "Iceberg warehouse: file://… or s3://bucket/prefix")
			fs.StringVar(&cfg.Iceberg.CatalogURI, "catalog-uri", cfg.Iceberg.CatalogURI, "catalog: SQL DSN or REST endpoint")
			fs.StringVar(&cfg.Store.Backend, "store", cfg.Store.Backend, "serving store whose hot retention to apply: clickhouse, or memory (none)")
			dataDir := fs.String("data-dir", "", "maintain the tables of a `lambdarec dev` data directory (sets the SQLite catalog and warehouse in it)")
			return func(ctx context.Context, e *env) error {
				cfg := e.cfg
				if *dataDir != "" {
					dir, err := filepath.Abs(*dataDir)
					if err != nil {
						return err
					}
					cfg.Iceberg.Catalog, cfg.Iceberg.SQLDialect = "sql", "sqlite"
					cfg.Iceberg.CatalogURI = "file:" + filepath.Join(dir, "catalog.db")
					cfg.Iceberg.Warehouse = "file://" + filepath.Join(dir, "warehouse")
				}
				return runMaintain(ctx, cfg, e.log, e.stdout)
			}
		},
		description: "Runs one pass of Iceberg maintenance on the events and batch tables: removes stale batch pins, drops event days past retention, compacts day partitions, merges manifests, expires old snapshots (never a pinned one) and deletes orphan files. Exits non-zero when a step failed.",
	})
}

// runMaintain runs one pass and prints what it did per table; the error
// (and so the exit code) says whether every step succeeded.
func runMaintain(ctx context.Context, cfg config.Config, log *slog.Logger, out io.Writer) error {
	lake, err := lakehouse.Open(ctx, cfg.Iceberg, log.With("component", "lakehouse"))
	if err != nil {
		return err
	}
	defer lake.Close()
	var st store.Store
	if cfg.Store.Backend != "memory" {
		if st, err = backend.Open(ctx, cfg, log.With("component", "store")); err != nil {
			return err
		}
		defer st.Close()
	}
	m, err := newMaintainer(cfg, lake, st, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "maintaining the tables of %s (snapshot retention %s, target file size %d MiB, events kept %s)\n",
		lake.Warehouse(), cfg.Maintenance.SnapshotRetention, cfg.Maintenance.TargetFileSize>>20, cfg.Retention.Events)
	rep, err := m.RunOnce(ctx)
	if rep != nil {
		for _, t := range rep.Tables {
			fmt.Fprintf(out, "  %-18s snapshots %d → %d, data files %d → %d, %d records; compacted %d → %d files, %d manifests merged, %d orphans deleted, %d files past retention, pins %d (%d stale removed); metadata %d bytes\n",
				t.Table, t.SnapshotsBefore, t.SnapshotsAfter, t.DataFilesBefore, t.DataFilesAfter, t.Records,
				t.CompactedFiles, t.CompactedInto, t.ManifestsRewritten, t.OrphansDeleted, t.RetentionFilesDeleted,
				t.Pinned, t.PinsRemoved, t.MetadataBytes)
		}
		fmt.Fprintf(out, "done in %s\n", rep.Duration.Round(time.Millisecond))
	}
	if err != nil {
		return fmt.Errorf("maintenance pass: %w", err)
	}
	return nil
}

// newMaintainer returns the maintainer of cfg's tables; st, when not nil,
// gets its hot retention applied.
func newMaintainer(cfg config.Config, lake *lakehouse.Lakehouse, st store.Store, log *slog.Logger) (*maintain.Maintainer, error) {
	mc := maintain.Config{Lake: lake, Maintenance: cfg.Maintenance, Retention: cfg.Retention}
	if st != nil {
		mc.Store = st
	}
	return maintain.New(mc, log.With("component", "maintain"))
}

// devMaintenance makes maintenance run every few minutes inside `dev`,
// unless the configuration chose a schedule of its own.
func devMaintenance(cfg *config.Config) {
	def := config.Default().Maintenance
	if cfg.Maintenance.Cron == def.Cron {
		cfg.Maintenance.Cron = "@every 5m"
	}
	if cfg.Maintenance.SnapshotRetention == def.SnapshotRetention {
		cfg.Maintenance.SnapshotRetention = 10 * time.Minute
	}
}
