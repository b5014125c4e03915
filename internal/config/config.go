// Package config owns lambdarec's configuration: one YAML file in which every
// key has a default and unknown keys are errors, overridden by LAMBDAREC_…
// environment variables and then by command-line flags.
package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lambdarec/lambdarec/internal/model"
)

// Config is the whole configuration. Each role reads the sections it needs.
type Config struct {
	Kafka   Kafka   `yaml:"kafka"`
	Broker  Broker  `yaml:"broker"`
	Serve   Serve   `yaml:"serve"`
	Iceberg Iceberg `yaml:"iceberg"`
	Archive Archive `yaml:"archive"`
	Batch   Batch   `yaml:"batch"`
	Speed   Speed   `yaml:"speed"`
	// Model holds the recommendation model's parameters, shared by the
	// batch and the speed layer (they must agree for batch ⊕ speed to be
	// exact). Defaults: model.DefaultParams().
	Model      model.Params `yaml:"model"`
	Store      Store        `yaml:"store"`
	ClickHouse ClickHouse   `yaml:"clickhouse"`
	Log        Log          `yaml:"log"`

	// Maintenance and Retention: see maintenance.go.
	Maintenance Maintenance `yaml:"maintenance"`
	Retention   Retention   `yaml:"retention"`
	// Status holds the thresholds of /v1/status (limits.go).
	Status Status `yaml:"status"`
	// Dev configures `lambdarec dev` (dev.go).
	Dev Dev `yaml:"dev"`

	// set holds the dotted keys the file or the environment wrote (IsSet).
	set map[string]bool
}

// Kafka says where the event log is.
type Kafka struct {
	// Brokers are the seed brokers. Default: 127.0.0.1:9092.
	Brokers []string `yaml:"brokers"`
	// Topic carries the events. Default: events.
	Topic string `yaml:"topic"`
	// DLQTopic receives records that cannot be decoded or validated. Default: events.dlq.
	DLQTopic string `yaml:"dlq_topic"`
	// Partitions is the partition count used when lambdarec creates the topics. Default: 6.
	Partitions int `yaml:"partitions"`
	// ProduceTimeout bounds how long a produce waits for Kafka's acknowledgement. Default: 10s.
	ProduceTimeout time.Duration `yaml:"produce_timeout"`
	// FetchMaxBytes and FetchMaxPartitionBytes bound one fetch response of
	// the speed layer's and the archive's consumers (franz-go's
	// FetchMaxBytes / FetchMaxPartitionBytes; each consumer buffers at
	// most one fetch per broker beside the one it processes, decompressed).
	// 0: franz-go's defaults, 50 MiB and 1 MiB. `lambdarec dev` uses
	// DevFetchMaxBytes and DevFetchMaxPartitionBytes unless set.
	FetchMaxBytes          int64 `yaml:"fetch_max_bytes"`
	FetchMaxPartitionBytes int64 `yaml:"fetch_max_partition_bytes"`
	// TLS and SASL secure the connections of every role (kafka_security.go).
	TLS  KafkaTLS  `yaml:"tls"`
	SASL KafkaSASL `yaml:"sasl"`
}

// Broker configures the embedded Kafka-protocol broker.
type Broker struct {
	// Addr is the loopback address it listens on. Default: 127.0.0.1:9092.
	Addr string `yaml:"addr"`
	// DataDir persists the log when set. Default: none (in memory).
	DataDir string `yaml:"data_dir"`
	// RetentionBytes bounds each partition (config/broker.go). Default:
	// 64 MiB; 0 keeps every record.
	RetentionBytes int64 `yaml:"retention_bytes"`
}

// Serve configures the HTTP server of the serving layer and its collector.
type Serve struct {
	// Addr is the listen address. Default: 127.0.0.1:8080.
	Addr string `yaml:"addr"`
	// MaxBodyBytes bounds a POST /v1/events body. Default: 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxBatchEvents bounds the events in one POST. Default: 1000.
	MaxBatchEvents int `yaml:"max_batch_events"`
	// ShutdownTimeout bounds how long a stopping server waits for in-flight
	// requests. Default: 15s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MaxInflightBytes bounds the request bodies held at once; past it
	// requests get 503 with Retry-After. Default: 128 MiB (limits.go).
	MaxInflightBytes int64 `yaml:"max_inflight_bytes"`
	// MaxInflightRequests bounds the event requests handled at once; past
	// it requests get 503 with Retry-After. Default: 1024.
	MaxInflightRequests int `yaml:"max_inflight_requests"`
	// MaxConnections bounds the open client connections; at the limit the
	// longest-idle one is closed to make room. Default: 4096.
	MaxConnections int `yaml:"max_connections"`
	// ReadTimeout bounds reading a whole request, body included. Default: 15s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds a request from the end of its headers to the end
	// of its answer. Default: 30s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// Auth requires API keys (see auth.go). Default: off.
	Auth ServeAuth `yaml:"auth"`
	// TLS serves HTTPS (see auth.go). Default: plain HTTP.
	TLS ServeTLS `yaml:"tls"`
	// SpeedScorers are the base URLs (http or https) of the speed members
	// that score a live session at read time (POST /internal/v1/score on
	// their speed.metrics_addr; internal/readscore). Default: none — the
	// stored views are answered. `dev` scores with its own speed layer.
	SpeedScorers []string `yaml:"speed_scorers"`
	// SpeedScoreTimeout bounds one read-time scoring; past it the stored
	// view is answered. Default: 50ms.
	SpeedScoreTimeout time.Duration `yaml:"speed_score_timeout"`
	// SpeedScoreTokenFile / SpeedScoreTokenEnv hold the bearer token sent
	// to the speed members (a secret: in a file or the named environment
	// variable, never in the configuration). Default: none.
	SpeedScoreTokenFile string `yaml:"speed_score_token_file"`
	SpeedScoreTokenEnv  string `yaml:"speed_score_token_env"`
}

// Iceberg says where the master dataset and the batch view live.
type Iceberg struct {
	// Catalog is "sql" (default), "rest" or "glue".
	Catalog string `yaml:"catalog"`
	// CatalogURI is the SQL DSN (sqlite: file path, postgres: URL) or the REST endpoint.
	// Default: file:lambdarec-data/catalog.db (SQLite).
	CatalogURI string `yaml:"catalog_uri"`
	// SQLDialect is "sqlite" (default) or "postgres" for the SQL catalog.
	SQLDialect string `yaml:"sql_dialect"`
	// Warehouse is the root location of table data: file:// (default
	// file://<cwd>/lambdarec-data/warehouse) or s3://bucket/prefix.
	Warehouse string `yaml:"warehouse"`
	// Namespace holds lambdarec's tables. Default: lambdarec.
	Namespace string `yaml:"namespace"`
	// S3 configures s3:// warehouses; credentials come from the usual AWS chain.
	S3 S3 `yaml:"s3"`
	// REST holds the REST catalog's credentials and extra properties (see
	// credentials.go).
	REST IcebergREST `yaml:"rest"`
}

// S3 configures access to an S3-compatible object store.
type S3 struct {
	Endpoint  string `yaml:"endpoint"`
	Region    string `yaml:"region"`
	PathStyle bool   `yaml:"path_style"`
}

// Archive configures the Kafka → Iceberg archiver.
type Archive struct {
	// Group is the consumer group used for lag monitoring. Default: lambdarec-archive.
	Group string `yaml:"group"`
	// MaxRecords closes a micro-batch at this many records. Default: 50000.
	MaxRecords int `yaml:"max_records"`
	// MaxInterval closes a micro-batch after this long. Default: 10s.
	MaxInterval time.Duration `yaml:"max_interval"`
	// MetricsAddr serves /metrics and /healthz of `lambdarec archive`; empty
	// disables it. Default: 127.0.0.1:9465.
	MetricsAddr string `yaml:"metrics_addr"`
}

// Batch configures batch recomputes.
type Batch struct {
	// Cron is the schedule of `batch schedule`. Default: "@every 1h".
	Cron string `yaml:"cron"`
	// TopK is the neighbours kept per item and recommendations per user. Default: 50.
	TopK int `yaml:"top_k"`
	// MetricsAddr serves /metrics (the batch-run metrics) and /healthz of
	// `batch schedule`; empty: off (the default). See batchmetrics.go.
	MetricsAddr string `yaml:"metrics_addr"`
	// MaxMemory bounds the heap of a batch run, in bytes (batch_memory.go).
	// Default: 1 GiB.
	MaxMemory int64 `yaml:"max_memory"`
}

// Speed configures the speed layer (`lambdarec speed`).
type Speed struct {
	// Group is the Kafka consumer group of the speed layer. Default: lambdarec-speed.
	Group string `yaml:"group"`
	// SessionTimeout expires a session idle this long, measured in record
	// time (Kafka timestamps). Default: 30m.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// MaxSessions bounds the live sessions held in memory; beyond it the
	// least recently active are evicted. Default: 1000000.
	MaxSessions int `yaml:"max_sessions"`
	// MaxRetainedEvents bounds the events of expired sessions kept until a
	// batch covers them (needed to hand deltas over exactly). Default: 20000000.
	MaxRetainedEvents int `yaml:"max_retained_events"`
	// MaxViewDelay bounds how long a session's real-time view may lag its
	// newest processed event (updates are debounced within it). Default: 50ms.
	MaxViewDelay time.Duration `yaml:"max_view_delay"`
	// ViewItems is the number of recommendations written per session. Default: 20.
	ViewItems int `yaml:"view_items"`
	// Explanations: see speed_explain.go.
	Explanations bool `yaml:"explanations"`
	// ScoreViews: see speed_views.go.
	ScoreViews bool `yaml:"score_views"`
	// BatchPollInterval is how often the layer checks for a newly published
	// batch. Default: 10s.
	BatchPollInterval time.Duration `yaml:"batch_poll_interval"`
	// CommitInterval is how often the replay position is committed. Default: 5s.
	CommitInterval time.Duration `yaml:"commit_interval"`
	// MetricsAddr serves /metrics, /healthz and /readyz of `lambdarec speed`;
	// empty disables it. Default: 127.0.0.1:9464.
	MetricsAddr string `yaml:"metrics_addr"`
	// InstanceID makes this member static (Kafka KIP-345): a restart with the
	// same id (a StatefulSet pod name, say) gets its partitions back without
	// a rebalance. Default: empty (a dynamic member).
	InstanceID string `yaml:"instance_id"`
	// MaxStateBytes bounds the estimated memory of live and retained
	// sessions together; past it the oldest are evicted. Default: 2 GiB.
	MaxStateBytes int64 `yaml:"max_state_bytes"`
	// RescoreInterval and DeltasTopic: see speed_exact.go.
	RescoreInterval time.Duration `yaml:"rescore_interval"`
	DeltasTopic     string        `yaml:"deltas_topic"`
	// ScoreTokenFile and ScoreTokenEnv: see speed_score.go.
	ScoreTokenFile string `yaml:"score_token_file"`
	ScoreTokenEnv  string `yaml:"score_token_env"`
}

// Store selects the serving store, where the batch and real-time views live.
type Store struct {
	// Backend is "memory" (in-process, the default), "clickhouse" (see the
	// clickhouse section) or "redis" (store.redis, redis.go).
	Backend string `yaml:"backend"`
	// Sessions is where the real-time view lives when it is not the
	// backend's: "" (the backend's own, the default) or "redis" (with
	// backend clickhouse: batch views in ClickHouse, sessions in Redis).
	Sessions string `yaml:"sessions"`
	Redis    Redis  `yaml:"redis"`
	// Memory configures the in-process store (dev.go).
	Memory StoreMemory `yaml:"memory"`
}

// ClickHouse configures the ClickHouse serving store (store.backend: clickhouse).
type ClickHouse struct {
	// DSN is a clickhouse-go DSN on the native protocol.
	// Default: clickhouse://127.0.0.1:9000/default.
	DSN string `yaml:"dsn"`
	// CacheEntries bounds the batch-view lists cached in memory per process.
	// Default: 200000.
	CacheEntries int `yaml:"cache_entries"`
	// RefreshInterval is how often the current batch id is re-read, i.e. how
	// long another process's publish may go unseen. Default: 1s.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// KeepBatches is how many batch views are kept, the current one included.
	// Default: 2.
	KeepBatches int `yaml:"keep_batches"`
	// Username, and the password from a file or an environment variable,
	// override the DSN's credentials (see credentials.go). Default: the DSN's.
	Username     string        `yaml:"username"`
	PasswordFile string        `yaml:"password_file"`
	PasswordEnv  string        `yaml:"password_env"`
	TLS          ClickHouseTLS `yaml:"tls"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Format is text (default) or json.
	Format string `yaml:"format"`
}

// Default returns the configuration with every default filled in.
func Default() Config {
	return Config{
		Kafka: Kafka{
			Brokers:        []string{"127.0.0.1:9092"},
			Topic:          "events",
			DLQTopic:       "events.dlq",
			Partitions:     6,
			ProduceTimeout: 10 * time.Second,
		},
		Broker: Broker{Addr: "127.0.0.1:9092", RetentionBytes: DefaultBrokerRetentionBytes},
		Serve: Serve{Addr: "127.0.0.1:8080", MaxBodyBytes: 1 << 20, MaxBatchEvents: 1000, ShutdownTimeout: 15 * time.Second,
			MaxInflightBytes: DefaultMaxInflightBytes, MaxInflightRequests: DefaultMaxInflightRequests,
			MaxConnections: DefaultMaxConnections, ReadTimeout: DefaultReadTimeout, WriteTimeout: DefaultWriteTimeout,
			Auth: defaultServeAuth(), SpeedScoreTimeout: DefaultSpeedScoreTimeout},
		Iceberg: Iceberg{
			Catalog:    "sql",
			CatalogURI: "file:lambdarec-data/catalog.db",
			SQLDialect: "sqlite",
			Warehouse:  "file://lambdarec-data/warehouse",
			Namespace:  "lambdarec",
			S3:         S3{Region: "us-east-1"},
		},
		Archive: Archive{Group: "lambdarec-archive", MaxRecords: 50_000, MaxInterval: 10 * time.Second, MetricsAddr: "127.0.0.1:9465"},
		Batch:   Batch{Cron: "@every 1h", TopK: 50, MaxMemory: DefaultBatchMaxMemory},
		Model:   model.DefaultParams(),
		Speed: Speed{
			Group:             "lambdarec-speed",
			SessionTimeout:    30 * time.Minute,
			MaxSessions:       1_000_000,
			MaxRetainedEvents: 20_000_000,
			MaxViewDelay:      50 * time.Millisecond,
			ViewItems:         20,
			Explanations:      true,
			ScoreViews:        true,
			BatchPollInterval: 10 * time.Second,
			CommitInterval:    5 * time.Second,
			MetricsAddr:       "127.0.0.1:9464",
			MaxStateBytes:     DefaultMaxStateBytes,
			RescoreInterval:   DefaultRescoreInterval,
		},
		Store:      Store{Backend: "memory", Redis: defaultRedis(), Memory: StoreMemory{MaxSessionBytes: DefaultStoreMemorySessionBytes}},
		ClickHouse: ClickHouse{DSN: "clickhouse://127.0.0.1:9000/default", CacheEntries: 200_000, RefreshInterval: time.Second, KeepBatches: 2},
		Log:        Log{Level: "info", Format: "text"},

		Maintenance: defaultMaintenance(),
		Retention:   defaultRetention(),
		Status:      DefaultStatus(),
		Dev:         Dev{MaxMemory: DefaultDevMaxMemory},
	}
}

// Parse decodes YAML over the defaults. Unknown keys are errors.
func Parse(b []byte) (Config, error) {
	cfg := Default()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("parse config: %w", err)
	}
	// The keys written, for IsSet (a node keeps them; decoding into cfg
	// does not say which it set).
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err == nil {
		cfg.markYAMLKeys(&doc, "")
	}
	return cfg, nil
}

// Load reads the YAML file at path (none when path is empty), then applies the
// LAMBDAREC_… variables of environ, and validates the result.
func Load(path string, environ []string) (Config, error) {
	cfg := Default()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("read config: %w", err)
		}
		if cfg, err = Parse(b); err != nil {
			return Config{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	if err := ApplyEnv(&cfg, environ); err != nil {
		return Config{}, err
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate rejects values no role can work with.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if err := c.Model.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(c.Kafka.Brokers) == 0 {
		bad("kafka.brokers", "at least one broker is required")
	}
	for _, b := range c.Kafka.Brokers {
		if !strings.Contains(b, ":") {
			bad("kafka.brokers", "%q is not host:port", b)
		}
	}
	if c.Kafka.Topic == "" || c.Kafka.DLQTopic == "" {
		bad("kafka.topic", "topic and dlq_topic are required")
	}
	if c.Kafka.Topic == c.Kafka.DLQTopic {
		bad("kafka.dlq_topic", "must differ from kafka.topic")
	}
	if c.Kafka.Partitions < 1 || c.Kafka.Partitions > 10_000 {
		bad("kafka.partitions", "must be between 1 and 10000, got %d", c.Kafka.Partitions)
	}
	for _, f := range []struct {
		key string
		v   int64
	}{{"kafka.fetch_max_bytes", c.Kafka.FetchMaxBytes}, {"kafka.fetch_max_partition_bytes", c.Kafka.FetchMaxPartitionBytes}} {
		if f.v != 0 && (f.v < 1<<10 || f.v > 1<<30) {
			bad(f.key, "must be 0 (franz-go's default) or between 1024 and 1073741824 bytes, got %d", f.v)
		}
	}
	if c.Kafka.ProduceTimeout <= 0 {
		bad("kafka.produce_timeout", "must be positive")
	}
	validateKafkaSecurity(c.Kafka, bad)
	if c.Serve.MaxBodyBytes < 1024 {
		bad("serve.max_body_bytes", "must be at least 1024, got %d", c.Serve.MaxBodyBytes)
	}
	if c.Serve.MaxBatchEvents < 1 {
		bad("serve.max_batch_events", "must be at least 1")
	}
	if c.Serve.ShutdownTimeout <= 0 {
		bad("serve.shutdown_timeout", "must be positive")
	}
	errs = append(errs, validateServeSecurity(c.Serve)...)
	errs = append(errs, validateSpeedScorers(c.Serve)...)
	errs = append(errs, validateConnections(c)...)
	errs = append(errs, validateSecretRef("speed.score_token", c.Speed.ScoreTokenFile, c.Speed.ScoreTokenEnv)...)
	errs = append(errs, validateBatchMetrics(c.Batch)...)
	switch c.Iceberg.Catalog {
	case "sql":
		if c.Iceberg.SQLDialect != "sqlite" && c.Iceberg.SQLDialect != "postgres" {
			bad("iceberg.sql_dialect", "must be sqlite or postgres, got %q", c.Iceberg.SQLDialect)
		}
	case "rest", "glue":
	default:
		bad("iceberg.catalog", "must be sql, rest or glue, got %q", c.Iceberg.Catalog)
	}
	if !strings.HasPrefix(c.Iceberg.Warehouse, "file://") && !strings.HasPrefix(c.Iceberg.Warehouse, "s3://") {
		bad("iceberg.warehouse", "must start with file:// or s3://, got %q", c.Iceberg.Warehouse)
	}
	if c.Iceberg.Namespace == "" {
		bad("iceberg.namespace", "required")
	}
	if c.Archive.MaxRecords < 1 {
		bad("archive.max_records", "must be at least 1")
	}
	if c.Archive.MaxInterval <= 0 {
		bad("archive.max_interval", "must be positive")
	}
	if c.Batch.TopK < 1 || c.Batch.TopK > 10_000 {
		bad("batch.top_k", "must be between 1 and 10000")
	}
	if c.Speed.Group == "" {
		bad("speed.group", "required")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"speed.session_timeout", c.Speed.SessionTimeout}, {"speed.max_view_delay", c.Speed.MaxViewDelay}, {"speed.batch_poll_interval", c.Speed.BatchPollInterval}, {"speed.commit_interval", c.Speed.CommitInterval}} {
		if d.v <= 0 {
			bad(d.key, "must be positive")
		}
	}
	if c.Speed.MaxSessions < 1 {
		bad("speed.max_sessions", "must be at least 1")
	}
	if c.Speed.MaxRetainedEvents < 0 {
		bad("speed.max_retained_events", "must not be negative")
	}
	if c.Speed.ViewItems < 1 || c.Speed.ViewItems > 1000 {
		bad("speed.view_items", "must be between 1 and 1000")
	}
	switch c.Store.Backend {
	case "memory", "redis":
	case "clickhouse":
		if !strings.HasPrefix(c.ClickHouse.DSN, "clickhouse://") {
			bad("clickhouse.dsn", "must be a native-protocol DSN clickhouse://host:port/database, got %q", c.ClickHouse.DSN)
		}
	default:
		bad("store.backend", "must be memory, clickhouse or redis, got %q", c.Store.Backend)
	}
	errs = append(errs, c.validateStore()...)
	if c.ClickHouse.CacheEntries < 1 {
		bad("clickhouse.cache_entries", "must be at least 1")
	}
	if c.ClickHouse.RefreshInterval <= 0 {
		bad("clickhouse.refresh_interval", "must be positive")
	}
	if c.ClickHouse.KeepBatches < 2 {
		bad("clickhouse.keep_batches", "must be at least 2")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "must be text or json, got %q", c.Log.Format)
	}
	errs = append(errs, c.validateMaintenance()...)
	c.validateLimits(bad)
	c.validateBatchMemory(bad)
	c.validateBroker(bad)
	c.validateDev(bad)
	c.validateSpeedExact(bad)
	return errors.Join(errs...)
}

// EnvPrefix starts every environment override: LAMBDAREC_KAFKA_BROKERS
// overrides kafka.brokers (lists are comma-separated).
const EnvPrefix = "LAMBDAREC_"

// EnvConfigFile names the configuration file when --config is not given.
const EnvConfigFile = "LAMBDAREC_CONFIG"

// ApplyEnv sets the keys named by the LAMBDAREC_… entries of environ.
// A variable that names no key is an error, like an unknown YAML key, unless
// it is one lambdarec's environment rule ignores (env.go): test-harness
// variables and the service links Kubernetes injects.
func ApplyEnv(cfg *Config, environ []string) error {
	keys := map[string]reflect.Value{}
	dotted := map[string]string{}
	collect(reflect.ValueOf(cfg).Elem(), "", "", keys, dotted)
	var errs []error
	var unknown []string
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || name == EnvConfigFile {
			continue
		}
		key := strings.ToLower(strings.TrimPrefix(name, EnvPrefix))
		f, ok := keys[key]
		if !ok {
			if !ignoredEnv(name, val) {
				unknown = append(unknown, name)
			}
			continue
		}
		if err := setString(f, val); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		cfg.markSet(dotted[key])
	}
	// Checked once every key is set: a …_env key may name a LAMBDAREC_
	// variable that holds a secret.
	named := namedByEnvKeys(keys)
	for _, name := range unknown {
		if !named[name] {
			errs = append(errs, unknownEnv(name, keys))
		}
	}
	return errors.Join(errs...)
}

// collect maps every key of the Config struct v to its field, by the key's
// environment form ("speed_max_sessions", under the prefix env), and in
// dotted to its dotted form ("speed.max_sessions", as IsSet names it).
func collect(v reflect.Value, env, dot string, out map[string]reflect.Value, dotted map[string]string) {
	t := v.Type()
	for i := range t.NumField() {
		if !t.Field(i).IsExported() {
			continue
		}
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		key, dkey := tag, tag
		if env != "" {
			key, dkey = env+"_"+tag, dot+"."+tag
		}
		f := v.Field(i)
		if f.Kind() == reflect.Struct {
			collect(f, key, dkey, out, dotted)
			continue
		}
		out[key] = f
		dotted[key] = dkey
	}
}

var durationType = reflect.TypeOf(time.Duration(0))

func setString(f reflect.Value, s string) error {
	if u, ok := f.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch {
	case f.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.String:
		f.SetString(s)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		f.SetBool(b)
	case f.Kind() == reflect.Int || f.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		f.SetInt(n)
	case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
		var parts []string
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		f.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported type %s", f.Type())
	}
	return nil
}
