package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lambdarec/lambdarec/batch"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/store/backend"
)

func init() {
	register("batch list", command{
		summary: "list the recorded batches: id, snapshot, boundary, counts, parameters, created; which one is served and pinned",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			dataDir := batchOpsFlags(fs, cfg)
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, e *env) error {
				return withLake(ctx, e, *dataDir, func(lake *lakehouse.Lakehouse) error {
					return batchList(ctx, lake, e.stdout, *asJSON)
				})
			}
		},
	})
	register("batch pin", command{
		summary: "serve batch ID until unpinned (speed counts past its boundary); survives restarts",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			dataDir := batchOpsFlags(fs, cfg)
			return func(ctx context.Context, e *env) error {
				if len(e.args) != 1 {
					return errors.New("batch pin: name one batch id (lambdarec batch list)")
				}
				return withLake(ctx, e, *dataDir, func(lake *lakehouse.Lakehouse) error {
					run, err := batch.SetPin(ctx, lake, e.args[0], "pin", time.Now())
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "batch %s pinned (snapshot %d, boundary %s)\n", run.BatchID, run.SourceSnapshotID, fmtBoundary(run.Boundary))
					return publishServed(ctx, e, lake)
				})
			}
		},
	})
	register("batch unpin", command{
		summary: "remove the pin: serve the newest batch again",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			dataDir := batchOpsFlags(fs, cfg)
			return func(ctx context.Context, e *env) error {
				return withLake(ctx, e, *dataDir, func(lake *lakehouse.Lakehouse) error {
					ok, err := batch.Unpin(ctx, lake, time.Now())
					if err != nil {
						return err
					}
					if !ok {
						fmt.Fprintln(e.stdout, "no batch is pinned: nothing to do")
						return nil
					}
					fmt.Fprintln(e.stdout, "unpinned: the newest batch is served")
					return publishServed(ctx, e, lake)
				})
			}
		},
	})
	register("batch rollback", command{
		summary: "serve the batch recorded before the one served now (pins it)",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			dataDir := batchOpsFlags(fs, cfg)
			return func(ctx context.Context, e *env) error {
				return withLake(ctx, e, *dataDir, func(lake *lakehouse.Lakehouse) error {
					run, err := batch.Rollback(ctx, lake, time.Now())
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "rolled back: batch %s pinned (snapshot %d, boundary %s); lambdarec batch unpin serves the newest again\n",
						run.BatchID, run.SourceSnapshotID, fmtBoundary(run.Boundary))
					return publishServed(ctx, e, lake)
				})
			}
		},
	})
}

func batchOpsFlags(fs *flag.FlagSet, cfg *config.Config) *string {
	fs.StringVar(&cfg.Iceberg.Warehouse, "warehouse", cfg.Iceberg.Warehouse, "Iceberg warehouse: file://… or s3://bucket/prefix")
	fs.StringVar(&cfg.Iceberg.CatalogURI, "catalog-uri", cfg.Iceberg.CatalogURI, "catalog: SQL DSN or REST endpoint")
	fs.StringVar(&cfg.Store.Backend, "store", cfg.Store.Backend, "serving store to publish the served batch to at once: clickhouse, or memory (serving processes follow Iceberg)")
	return fs.String("data-dir", "", "use the tables of a `lambdarec dev` data directory (sets the SQLite catalog and warehouse in it)")
}

// withLake opens the lakehouse of e's configuration (or of a dev data
// directory) for fn.
func withLake(ctx context.Context, e *env, dataDir string, fn func(*lakehouse.Lakehouse) error) error {
	cfg := e.cfg
	if dataDir != "" {
		if err := useDataDir(&cfg, dataDir); err != nil {
			return err
		}
	}
	lake, err := lakehouse.Open(ctx, cfg.Iceberg, e.log.With("component", "lakehouse"))
	if err != nil {
		return err
	}
	defer lake.Close()
	return fn(lake)
}

// publishServed publishes the served batch to a shared serving store at once
// (an in-process store belongs to the serving process, whose loader follows
// the pin within seconds).
func publishServed(ctx context.Context, e *env, lake *lakehouse.Lakehouse) error {
	if e.cfg.Store.Backend == "memory" {
		return nil
	}
	st, err := backend.Open(ctx, e.cfg, e.log.With("component", "store"))
	if err != nil {
		return err
	}
	defer st.Close()
	if err := batch.NewLoader(lake, e.cfg.Model).Publish(ctx, st, e.log.With("component", "batch")); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "published to the %s store\n", e.cfg.Store.Backend)
	return nil
}

// listedBatch is one row of `batch list --json`.
type listedBatch struct {
	batch.Run
	Served bool `json:"served"`
	Pinned bool `json:"pinned"`
}

func batchList(ctx context.Context, lake *lakehouse.Lakehouse, out io.Writer, asJSON bool) error {
	runs, err := batch.Runs(ctx, lake)
	if err != nil {
		return err
	}
	served, ok, err := batch.ServedRun(ctx, lake)
	if err != nil {
		fmt.Fprintf(out, "warning: %v\n", err)
	}
	pin, err := batch.CurrentPin(ctx, lake)
	if err != nil {
		return err
	}
	rows := make([]listedBatch, len(runs))
	for i, r := range runs {
		rows[i] = listedBatch{Run: r, Served: ok && r.BatchID == served.Run.BatchID, Pinned: r.BatchID == pin.BatchID}
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"batches": rows, "pin": pin})
	}
	if len(rows) == 0 {
		fmt.Fprintln(out, "no batch recorded yet")
		return nil
	}
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\tBATCH\tSNAPSHOT\tBOUNDARY\tEVENTS\tPAIRS\tITEMS\tUSERS\tCREATED\tPARAMS")
	for _, r := range rows {
		mark := ""
		switch {
		case r.Pinned && r.Served:
			mark = "* pinned"
		case r.Served:
			mark = "*"
		case r.Pinned:
			mark = "pinned (unavailable)"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", mark, r.BatchID, r.SourceSnapshotID, fmtBoundary(r.Boundary),
			r.EventsAccepted, r.Pairs, r.Items, r.Users, r.FinishedAt.Format(time.RFC3339), r.Params)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if pin.Pinned() {
		fmt.Fprintf(out, "\npinned (%s) at %s: later batches are recorded, not served, until `lambdarec batch unpin`\n", pin.Reason, pin.At.Format(time.RFC3339))
	}
	return nil
}

// fmtBoundary prints a boundary as p:offset pairs in partition order.
func fmtBoundary(b map[int32]int64) string {
	if len(b) == 0 {
		return "{}"
	}
	parts := slices.Sorted(maps.Keys(b))
	s := make([]string, len(parts))
	for i, p := range parts {
		s[i] = fmt.Sprintf("%d:%d", p, b[p])
	}
	return strings.Join(s, ",")
}
