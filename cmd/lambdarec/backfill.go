package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/lambdarec/lambdarec/batch/backfill"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
)

func init() {
	register("backfill", command{
		summary: "load events from files (JSON lines, delimited protobuf, Parquet) into Iceberg events, exactly once per file",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			fs.StringVar(&cfg.Iceberg.Warehouse, "warehouse", cfg.Iceberg.Warehouse, "Iceberg warehouse: file://… or s3://bucket/prefix")
			fs.StringVar(&cfg.Iceberg.CatalogURI, "catalog-uri", cfg.Iceberg.CatalogURI, "catalog: SQL DSN or REST endpoint")
			dataDir := fs.String("data-dir", "", "load into the tables of a `lambdarec dev` data directory (sets the SQLite catalog and warehouse in it)")
			format := fs.String("format", "", "json, protodelim or parquet (default: from each file's extension)")
			return func(ctx context.Context, e *env) error {
				if len(e.args) == 0 {
					return errors.New("backfill: name at least one file")
				}
				cfg := e.cfg
				if *dataDir != "" {
					if err := useDataDir(&cfg, *dataDir); err != nil {
						return err
					}
				}
				var f backfill.Format
				if *format != "" {
					var err error
					if f, err = backfill.ParseFormat(*format); err != nil {
						return err
					}
				}
				lake, err := lakehouse.Open(ctx, cfg.Iceberg, e.log.With("component", "lakehouse"))
				if err != nil {
					return err
				}
				defer lake.Close()
				l, err := backfill.New(backfill.Config{Lake: lake, Progress: func(p backfill.Progress) {
					if p.Done {
						return
					}
					fmt.Fprintf(e.stdout, "  %s: %d events (%d rejected), %.0f events/s, %.0f%%, ETA %s\n",
						filepath.Base(p.Path), p.Events, p.Rejected, p.Rate(), 100*float64(p.BytesRead)/float64(max(p.BytesTotal, 1)), p.ETA().Round(time.Second))
				}}, e.log.With("component", "backfill"))
				if err != nil {
					return err
				}
				for _, path := range e.args {
					res, err := l.LoadFile(ctx, path, f)
					if err != nil {
						return err
					}
					if res.AlreadyLoaded {
						fmt.Fprintf(e.stdout, "%s: already loaded (sha256 %s), nothing changed\n", path, res.Checksum[:16])
						continue
					}
					fmt.Fprintf(e.stdout, "%s: %d events loaded, %d rejected, in %s: %.0f events/s (snapshot %d, offsets %d…%d on partition %d)\n",
						path, res.Rows, res.Rejected, res.Elapsed.Round(time.Millisecond), float64(res.Rows+res.Rejected)/res.Elapsed.Seconds(),
						res.SnapshotID, res.FirstOffset, res.FirstOffset+res.Rows-1, backfill.BackfillPartition)
					for _, r := range res.Reasons {
						fmt.Fprintf(e.stdout, "  rejected %s\n", r)
					}
				}
				return nil
			}
		},
	})
}

// useDataDir points cfg's catalog and warehouse into a `lambdarec dev` data
// directory.
func useDataDir(cfg *config.Config, dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	cfg.Iceberg.Catalog, cfg.Iceberg.SQLDialect = "sql", "sqlite"
	cfg.Iceberg.CatalogURI = "file:" + filepath.Join(dir, "catalog.db")
	cfg.Iceberg.Warehouse = "file://" + filepath.Join(dir, "warehouse")
	return nil
}
