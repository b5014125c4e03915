// Package lakehouse owns lambdarec's use of Apache Iceberg: opening the
// catalog and warehouse the configuration names (SQL catalog on SQLite or
// PostgreSQL, REST, Glue; file:// or s3:// warehouses), creating the
// namespace and tables, committing with retries on conflicts, the Kafka
// offsets kept in snapshot summaries (the batch/speed boundary) and carried
// onto every snapshot lambdarec writes (carry.go), the pins that keep a
// snapshot from expiry while a batch reads it (pins.go), and scanning pinned
// snapshots as streams of Arrow record batches.
//
// It is named lakehouse, not iceberg, so that it does not shadow iceberg-go.
package lakehouse

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	_ "github.com/apache/iceberg-go/catalog/glue" // registers the "glue" catalog type
	_ "github.com/apache/iceberg-go/catalog/rest" // registers the "rest" catalog type
	sqlcat "github.com/apache/iceberg-go/catalog/sql"
	icebergio "github.com/apache/iceberg-go/io"
	_ "github.com/apache/iceberg-go/io/gocloud/s3" // registers the s3:// warehouse scheme
	"github.com/apache/iceberg-go/table"
	"github.com/uptrace/bun/driver/pgdriver"
	"github.com/uptrace/bun/driver/sqliteshim"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/schemas"
)

// EventsTable is the name of the raw events table in the namespace.
const EventsTable = "events"

// catalogName is the name the SQL catalog records its rows under; every
// lambdarec process must use the same one.
const catalogName = "lambdarec"

// EventsTableProperties are the table properties the events table is created
// with: manifests are merged so that many small archive commits do not slow
// scan planning, old metadata files are deleted, and files are written
// without dictionaries at zstd's fastest level (see writeprops.go).
var EventsTableProperties = iceberg.Properties{
	table.ManifestMergeEnabledKey:             "true",
	table.MetadataDeleteAfterCommitEnabledKey: "true",
	table.MetadataPreviousVersionsMaxKey:      "50",
	parquetDictEnabledKey:                     "false",
	table.ParquetCompressionLevelKey:          "1",
}

// Lakehouse is an open catalog plus the namespace lambdarec's tables live in.
type Lakehouse struct {
	cat       catalog.Catalog
	namespace table.Identifier
	warehouse string
	log       *slog.Logger
	closers   []func() error

	// commitMu serialises the commits to each table made through this
	// Lakehouse (see Commit).
	mu       sync.Mutex
	commitMu map[string]*sync.Mutex
}

// commitLock returns the commit mutex of table name.
func (l *Lakehouse) commitLock(name string) *sync.Mutex {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.commitMu == nil {
		l.commitMu = map[string]*sync.Mutex{}
	}
	m := l.commitMu[name]
	if m == nil {
		m = &sync.Mutex{}
		l.commitMu[name] = m
	}
	return m
}

// Open connects to the catalog cfg names. It does not create anything; see
// EnsureTable.
func Open(ctx context.Context, cfg config.Iceberg, log *slog.Logger) (*Lakehouse, error) {
	warehouse, err := normalizeWarehouse(cfg.Warehouse)
	if err != nil {
		return nil, err
	}
	props := iceberg.Properties{"warehouse": warehouse}
	if strings.HasPrefix(warehouse, "s3://") {
		if cfg.S3.Region != "" {
			props[icebergio.S3Region] = cfg.S3.Region
		}
		if cfg.S3.Endpoint != "" {
			props[icebergio.S3EndpointURL] = cfg.S3.Endpoint
		}
		props[icebergio.S3ForceVirtualAddressing] = strconv.FormatBool(!cfg.S3.PathStyle)
	}
	l := &Lakehouse{namespace: catalog.ToIdentifier(cfg.Namespace), warehouse: warehouse, log: log}
	switch cfg.Catalog {
	case "sql":
		db, dialect, err := openSQL(cfg)
		if err != nil {
			return nil, err
		}
		cat, err := sqlcat.NewCatalog(catalogName, db, dialect, props)
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("open %s catalog %s: %w", cfg.SQLDialect, redactDSN(cfg.CatalogURI), err)
		}
		l.cat = cat
		l.closers = append(l.closers, cat.Close, db.Close)
	case "rest":
		rp, err := restProps(cfg.REST)
		if err != nil {
			return nil, err
		}
		maps.Copy(rp, props)
		rp["type"] = "rest"
		rp["uri"] = cfg.CatalogURI
		cat, err := catalog.Load(ctx, catalogName, rp)
		if err != nil {
			return nil, fmt.Errorf("open rest catalog %s: %w", cfg.CatalogURI, err)
		}
		l.cat = cat
	case "glue":
		props["type"] = "glue"
		if cfg.S3.Region != "" {
			props["glue.region"] = cfg.S3.Region
		}
		if cfg.CatalogURI != "" && !strings.HasPrefix(cfg.CatalogURI, "file:") {
			props["glue.endpoint"] = cfg.CatalogURI
		}
		cat, err := catalog.Load(ctx, catalogName, props)
		if err != nil {
			return nil, fmt.Errorf("open glue catalog: %w", err)
		}
		l.cat = cat
	default:
		return nil, fmt.Errorf("iceberg catalog %q: must be sql, rest or glue", cfg.Catalog)
	}
	if c, ok := l.cat.(catalog.Closer); ok && cfg.Catalog != "sql" {
		l.closers = append(l.closers, c.Close)
	}
	log.Info("iceberg catalog open", "catalog", cfg.Catalog, "dialect", cfg.SQLDialect, "uri", redactDSN(cfg.CatalogURI), "warehouse", warehouse, "namespace", cfg.Namespace)
	return l, nil
}

// sqlitePragmas make SQLite safe for several processes sharing the catalog:
// writers wait for the lock instead of failing, and readers do not block
// writers.
const sqlitePragmas = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"

func openSQL(cfg config.Iceberg) (*sql.DB, sqlcat.SupportedDialect, error) {
	switch cfg.SQLDialect {
	case "sqlite":
		dsn := cfg.CatalogURI
		if path := sqlitePath(dsn); path != "" {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return nil, "", fmt.Errorf("catalog directory: %w", err)
			}
		}
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		if !strings.Contains(dsn, "busy_timeout") {
			dsn += sep + sqlitePragmas
		}
		db, err := sql.Open(sqliteshim.ShimName, dsn)
		if err != nil {
			return nil, "", fmt.Errorf("open sqlite catalog %s: %w", cfg.CatalogURI, err)
		}
		return db, sqlcat.SQLite, nil
	case "postgres":
		db := sql.OpenDB(pgdriver.NewConnector(pgdriver.WithDSN(cfg.CatalogURI)))
		return db, sqlcat.Postgres, nil
	}
	return nil, "", fmt.Errorf("iceberg sql dialect %q: must be sqlite or postgres", cfg.SQLDialect)
}

// sqlitePath returns the file of a SQLite DSN such as file:dir/catalog.db?x=y
// or dir/catalog.db, or "" for in-memory databases.
func sqlitePath(dsn string) string {
	p, _, _ := strings.Cut(strings.TrimPrefix(dsn, "file:"), "?")
	if p == "" || p == ":memory:" || strings.HasPrefix(p, "//") {
		return ""
	}
	return p
}

// redactDSN hides a password in a DSN for logs and errors.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	return u.Redacted()
}

// normalizeWarehouse turns a relative file:// warehouse (as in the default,
// file://lambdarec-data/warehouse) into an absolute one against the working
// directory; other locations are returned as they are.
func normalizeWarehouse(w string) (string, error) {
	rest, ok := strings.CutPrefix(w, "file://")
	if !ok {
		if !strings.HasPrefix(w, "s3://") {
			return "", fmt.Errorf("iceberg warehouse %q: must start with file:// or s3://", w)
		}
		return strings.TrimSuffix(w, "/"), nil
	}
	if strings.HasPrefix(rest, "/") {
		return "file://" + strings.TrimSuffix(rest, "/"), nil
	}
	abs, err := filepath.Abs(rest)
	if err != nil {
		return "", fmt.Errorf("iceberg warehouse %q: %w", w, err)
	}
	return "file://" + filepath.ToSlash(abs), nil
}

// Catalog returns the underlying iceberg-go catalog.
func (l *Lakehouse) Catalog() catalog.Catalog { return l.cat }

// Namespace returns the namespace of lambdarec's tables.
func (l *Lakehouse) Namespace() table.Identifier { return l.namespace }

// Warehouse returns the warehouse location, made absolute.
func (l *Lakehouse) Warehouse() string { return l.warehouse }

// Ident returns the identifier of table name in the namespace.
func (l *Lakehouse) Ident(name string) table.Identifier {
	return append(append(table.Identifier{}, l.namespace...), name)
}

// LoadTable loads table name of the namespace; the error wraps
// catalog.ErrNoSuchTable when it does not exist.
func (l *Lakehouse) LoadTable(ctx context.Context, name string) (*table.Table, error) {
	t, err := l.cat.LoadTable(ctx, l.Ident(name))
	if err != nil {
		return nil, fmt.Errorf("load table %s: %w", strings.Join(l.Ident(name), "."), err)
	}
	return t, nil
}

// EnsureTable returns table name, creating the namespace and the table with
// sc, spec and props when they do not exist yet. An existing table is evolved
// to sc (evolve.go): a column it lacks is added as an optional column (old
// rows read it as null); a column removed from sc or typed differently is an
// error naming it.
func (l *Lakehouse) EnsureTable(ctx context.Context, name string, sc *iceberg.Schema, spec iceberg.PartitionSpec, props iceberg.Properties) (*table.Table, error) {
	if err := l.ensureNamespace(ctx); err != nil {
		return nil, err
	}
	ident := l.Ident(name)
	t, err := l.cat.LoadTable(ctx, ident)
	if errors.Is(err, catalog.ErrNoSuchTable) {
		t, err = l.cat.CreateTable(ctx, ident, sc, catalog.WithPartitionSpec(&spec), catalog.WithProperties(props))
		if errors.Is(err, catalog.ErrTableAlreadyExists) {
			t, err = l.cat.LoadTable(ctx, ident) // created concurrently
		} else if err == nil {
			l.log.Info("iceberg table created", "table", strings.Join(ident, "."), "location", t.Location())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ensure table %s: %w", strings.Join(ident, "."), err)
	}
	if t, err = l.evolve(ctx, t, sc); err != nil {
		return nil, fmt.Errorf("table %s: %w", strings.Join(ident, "."), err)
	}
	if err := checkSchema(t.Schema(), sc); err != nil {
		return nil, fmt.Errorf("table %s: %w", strings.Join(ident, "."), err)
	}
	return t, nil
}

// checkSchema reports the columns of want that have lacks or types
// differently.
func checkSchema(have, want *iceberg.Schema) error {
	var errs []error
	for _, f := range want.Fields() {
		h, ok := have.FindFieldByName(f.Name)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("column %s (%s) is missing", f.Name, f.Type))
		case !sameType(h.Type, f.Type):
			errs = append(errs, fmt.Errorf("column %s is %s, want %s", f.Name, h.Type, f.Type))
		}
	}
	return errors.Join(errs...)
}

// sameType compares types ignoring the field ids of nested types, which the
// catalog assigns afresh when it creates a table.
func sameType(a, b iceberg.Type) bool {
	switch at := a.(type) {
	case *iceberg.MapType:
		bt, ok := b.(*iceberg.MapType)
		return ok && at.ValueRequired == bt.ValueRequired && sameType(at.KeyType, bt.KeyType) && sameType(at.ValueType, bt.ValueType)
	case *iceberg.ListType:
		bt, ok := b.(*iceberg.ListType)
		return ok && at.ElementRequired == bt.ElementRequired && sameType(at.Element, bt.Element)
	case *iceberg.StructType:
		bt, ok := b.(*iceberg.StructType)
		if !ok || len(at.FieldList) != len(bt.FieldList) {
			return false
		}
		for i, f := range at.FieldList {
			g := bt.FieldList[i]
			if f.Name != g.Name || f.Required != g.Required || !sameType(f.Type, g.Type) {
				return false
			}
		}
		return true
	}
	return a.Equals(b)
}

func (l *Lakehouse) ensureNamespace(ctx context.Context) error {
	ok, err := l.cat.CheckNamespaceExists(ctx, l.namespace)
	if err != nil {
		return fmt.Errorf("check namespace %s: %w", strings.Join(l.namespace, "."), err)
	}
	if ok {
		return nil
	}
	err = l.cat.CreateNamespace(ctx, l.namespace, nil)
	if err != nil && !errors.Is(err, catalog.ErrNamespaceAlreadyExists) {
		return fmt.Errorf("create namespace %s: %w", strings.Join(l.namespace, "."), err)
	}
	return nil
}

// EnsureEvents returns the raw events table, creating it (with the schema
// derived from interaction.proto, partitioned by day(timestamp)) if needed,
// and gives an existing table the Parquet write properties it lacks
// (writeprops.go).
func (l *Lakehouse) EnsureEvents(ctx context.Context) (*table.Table, error) {
	t, err := l.EnsureTable(ctx, EventsTable, schemas.EventsSchema(), schemas.EventsPartitionSpec(), EventsTableProperties)
	if err != nil {
		return nil, err
	}
	return l.ensureWriteProperties(ctx, t)
}

// Close releases the catalog.
func (l *Lakehouse) Close() error {
	var errs []error
	for _, c := range l.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// ---------------------------------------------------------------------------
// Commits.

// IsCommitConflict reports whether err is a commit that lost a race against
// another writer ("branch main has changed", a moved metadata location): the
// commit did not happen and may be rebuilt on the reloaded table.
func IsCommitConflict(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, table.ErrCommitFailed) {
		return true
	}
	msg := strings.ToLower(err.Error())
	return strings.Contains(msg, "requirement failed")
}

// CommitOptions tune Commit. The zero value is usable.
type CommitOptions struct {
	// MaxAttempts bounds the attempts, the first included. Default: 10.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the jittered exponential wait between
	// attempts. Defaults: 50ms and 2s.
	MinBackoff, MaxBackoff time.Duration
	// OnConflict, when set, is called for each conflict that is retried.
	OnConflict func(attempt int, err error)
	// Fresh loads the table again before the first build, for callers whose
	// table was loaded long before (a compaction that spent seconds writing
	// files): built on it, even a commit that succeeds makes iceberg-go try
	// to delete metadata files that later commits already removed.
	Fresh bool
	// Appends names the data files build's transaction appends (the files
	// it hands AppendTxn), so that Commit checks that they exist by a stat
	// of each (one HEAD request on S3) instead of reading the new manifests
	// back (see checkAdded). It must name exactly the files build appends;
	// a staged snapshot that does not add as many data files to the table
	// build was given is checked by the read-back. Default: none (a commit
	// that adds data files is read back).
	Appends []iceberg.DataFile
}

// Commit builds a transaction on tbl with build and commits it. When the
// commit conflicts with another writer, it reloads the table and calls build
// again on the fresh table, so build must derive everything it commits from
// the table it is given (and may return an error to give up, which Commit
// returns as it is). It returns the committed table: use it, do not keep it
// for the next commit (an iceberg-go table returned by a commit holds what
// it was built from, so keeping one per commit grows the heap with the
// snapshot history); load the table again instead.
//
// Commits to one table through one Lakehouse take turns (build and commit
// under a per-table mutex): in one process (dev) a slow committer such as a
// compaction, whose build writes manifests, would otherwise lose every race
// to an archive committing every 100 ms. Writers in other processes are
// handled by the optimistic retry alone.
//
// Before committing, Commit checks that the data files the transaction adds
// exist: one that maintenance's orphan step deleted while it waited to be
// committed (see Exclusive) fails the commit with ErrAddedFileGone instead
// of landing a table that references a missing file. For an append, name
// its files in opts.Appends so that the check stats those files only.
func (l *Lakehouse) Commit(ctx context.Context, tbl *table.Table, build func(ctx context.Context, tbl *table.Table) (*table.Transaction, error), opts CommitOptions) (*table.Table, error) {
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 10
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 50 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(2*time.Second, opts.MinBackoff)
	}
	name := strings.Join(tbl.Identifier(), ".")
	lock := l.commitLock(name)
	for attempt := 1; ; attempt++ {
		lock.Lock()
		if attempt == 1 && opts.Fresh {
			fresh, err := l.cat.LoadTable(ctx, tbl.Identifier())
			if err != nil {
				lock.Unlock()
				return nil, fmt.Errorf("reload %s: %w", name, err)
			}
			tbl = fresh
		}
		txn, err := build(ctx, tbl)
		if err != nil {
			lock.Unlock()
			if !errors.Is(err, fs.ErrNotExist) || attempt >= opts.MaxAttempts {
				return nil, err
			}
			// A file of tbl's snapshot is gone: another writer expired it
			// since tbl was loaded (a maintenance pass in another process,
			// or one that committed between the caller's load and this
			// build). Nothing was committed; build again on the table as
			// it is now.
			l.log.Warn("iceberg table changed under a commit, retrying", "table", name, "attempt", attempt, "err", err)
			if opts.OnConflict != nil {
				opts.OnConflict(attempt, err)
			}
			fresh, lerr := l.cat.LoadTable(ctx, tbl.Identifier())
			if lerr != nil {
				return nil, fmt.Errorf("reload %s after a file of it vanished: %w", name, lerr)
			}
			tbl = fresh
			continue
		}
		if err := checkAdded(ctx, tbl, txn, opts.Appends); err != nil {
			lock.Unlock()
			return nil, fmt.Errorf("commit to %s: %w", name, err)
		}
		committed, err := txn.Commit(ctx)
		lock.Unlock()
		if err == nil {
			return committed, nil
		}
		if committed != nil {
			// The catalog took the commit; what failed is the clean-up after
			// it (deleting the files of expired snapshots). Files already
			// gone are fine: iceberg-go also tries the files that expired
			// manifests list as deleted, which an earlier expiry removed.
			if allNotExist(err) {
				return committed, nil
			}
			return committed, fmt.Errorf("commit to %s: committed, but the clean-up after it failed: %w", name, err)
		}
		if !IsCommitConflict(err) || attempt >= opts.MaxAttempts {
			return nil, fmt.Errorf("commit to %s (attempt %d): %w", name, attempt, err)
		}
		if opts.OnConflict != nil {
			opts.OnConflict(attempt, err)
		}
		l.log.Warn("iceberg commit conflict, retrying", "table", name, "attempt", attempt, "err", err)
		wait := backoff(attempt, opts.MinBackoff, opts.MaxBackoff)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("commit to %s: %w", name, context.Cause(ctx))
		case <-time.After(wait):
		}
		fresh, err := l.cat.LoadTable(ctx, tbl.Identifier())
		if err != nil {
			return nil, fmt.Errorf("reload %s after a commit conflict: %w", name, err)
		}
		tbl = fresh
	}
}

// allNotExist reports whether every error joined in err is a missing file.
func allNotExist(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if e != nil && !allNotExist(e) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, fs.ErrNotExist)
}

// backoff returns a wait in [min, min<<attempt], capped at max.
func backoff(attempt int, minWait, maxWait time.Duration) time.Duration {
	ceil := minWait << min(attempt, 16)
	if ceil > maxWait || ceil <= 0 {
		ceil = maxWait
	}
	return minWait + rand.N(ceil-minWait+1)
}
