package speed

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/model"
)

// Config configures a Layer. Zero values take the documented defaults.
type Config struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// Security is how the brokers are reached (kafka.tls, kafka.sasl).
	// Default: plaintext, no authentication.
	Security kafka.Security
	// Topic carries the events. Default: events.
	Topic string
	// DeltasTopic is the compacted topic through which the members share
	// their partitions' co-visitation deltas, so every member scores from
	// the deltas of all partitions (deltashare.go). It is created, compacted,
	// with the events topic's partition count if missing.
	// Default: Topic + ".speed-deltas".
	DeltasTopic string
	// Group is the consumer group. Default: lambdarec-speed.
	Group string
	// SessionTimeout expires a session idle this long in record time.
	// Default: 30m.
	SessionTimeout time.Duration
	// MaxSessions bounds live sessions; the least recently active are
	// evicted beyond it. Default: 1000000.
	MaxSessions int
	// MaxRetainedEvents bounds the events of expired sessions retained until
	// a batch covers them. Default: 20000000.
	MaxRetainedEvents int
	// MaxStateBytes bounds the estimated memory of live and retained
	// sessions together; past it the oldest are dropped: retained sessions
	// first (oldest retention first), then the least recently active live
	// ones. Default: 2 GiB.
	MaxStateBytes int64
	// MaxViewDelay bounds how long a processed update may wait before its
	// view is written. Default: 50ms.
	MaxViewDelay time.Duration
	// RescoreInterval is how often the views of live sessions whose merged
	// co-visitation rows changed (by other sessions' records, or other
	// members' deltas) are scored again and rewritten, so a served view is
	// exact when read, not only right after its own newest record.
	// Default: 250ms. It also paces the publication of this member's
	// deltas to the other members (deltashare.go), rescoring or not.
	RescoreInterval time.Duration
	// NoRescore turns rescoring off (speed.rescore_interval: 0): a view is
	// scored at its session's own records (and when every row changes at
	// once: a handoff, an assignment), never because another session's
	// record or another member's deltas changed a row it read, and no
	// index of the rows the views read is kept. For members whose every
	// read is scored at read time (readscore: serve.speed_scorers, dev),
	// where a stored view is only the fallback answer. Default: rescoring
	// on.
	NoRescore bool
	// NoViewScores turns the views' scoring off (speed.score_views: false):
	// a flush writes each changed session's view with the inputs it is
	// scored from only — its recent items (an explanation without
	// contributions: store.SessionExplanation with every TopCount 0 and no
	// From, what store.DecodeRecent reads), its purchases, user, event time
	// and position — and no Items; nothing is scored or explained per view,
	// and rescoring is off (NoRescore). For members whose every read is
	// scored at read time (ScoreRecent: serve.speed_scorers, dev), where a
	// view's items are never served. Default: views scored.
	NoViewScores bool
	// ViewItems is the number of recommendations per view. Default: 20.
	ViewItems int
	// NoExplanations turns off the explanation written with each view
	// (explain.go). Default: written.
	NoExplanations bool
	// BatchPollInterval is how often the BatchSource is asked. Default: 10s.
	BatchPollInterval time.Duration
	// CommitInterval is how often replay horizons are committed. Default: 5s.
	CommitInterval time.Duration
	// MaxPollRecords bounds the records processed between two rebalance
	// points. A session's view is scored once per poll, after its last
	// record there, so behind a backlog larger polls write fewer views per
	// record: measured (BenchmarkThroughput, catching up on 400k records),
	// 50000 against 10000 took 0.60 views and 29 µs of process CPU per
	// record instead of 0.69 and 38. Caught up, a poll holds what arrived
	// since the last one whatever the bound. Default: 50000.
	MaxPollRecords int
	// Params are the model parameters used until the first batch arrives;
	// after that, the batch model's. Default: model.DefaultParams().
	Params *model.Params
	// InstanceID makes the member static (KIP-345): a restart with the same
	// id gets its partitions back without a rebalance. Default: dynamic.
	InstanceID string
	// ClientOpts are extra franz-go options, applied last (for example
	// shorter group session timeouts).
	ClientOpts []kgo.Opt
}

// FromConfig maps the configuration (kafka, speed and model sections) to a
// Config.
func FromConfig(c *config.Config) Config {
	return Config{
		InstanceID:        c.Speed.InstanceID,
		Brokers:           c.Kafka.Brokers,
		Security:          kafka.SecurityOf(c.Kafka),
		Topic:             c.Kafka.Topic,
		DeltasTopic:       c.Speed.DeltasTopic,
		Group:             c.Speed.Group,
		SessionTimeout:    c.Speed.SessionTimeout,
		MaxSessions:       c.Speed.MaxSessions,
		MaxRetainedEvents: c.Speed.MaxRetainedEvents,
		MaxStateBytes:     c.Speed.MaxStateBytes,
		MaxViewDelay:      c.Speed.MaxViewDelay,
		RescoreInterval:   c.Speed.RescoreInterval, // 0: off (NoRescore), publishing at the default
		NoRescore:         c.Speed.RescoreInterval == 0,
		ViewItems:         c.Speed.ViewItems,
		NoExplanations:    !c.Speed.Explanations,
		NoViewScores:      !c.Speed.ScoreViews,
		BatchPollInterval: c.Speed.BatchPollInterval,
		CommitInterval:    c.Speed.CommitInterval,
		Params:            &c.Model,
	}
}

// validate fills defaults and rejects impossible values.
func (c *Config) validate() error {
	if c.Topic == "" {
		c.Topic = "events"
	}
	if c.Group == "" {
		c.Group = "lambdarec-speed"
	}
	if c.DeltasTopic == "" {
		c.DeltasTopic = c.Topic + ".speed-deltas"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.SessionTimeout, 30*time.Minute)
	def(&c.MaxViewDelay, 50*time.Millisecond)
	def(&c.RescoreInterval, 250*time.Millisecond)
	if c.NoViewScores {
		c.NoRescore = true // a view without items has nothing to rescore
	}
	def(&c.BatchPollInterval, 10*time.Second)
	def(&c.CommitInterval, 5*time.Second)
	if c.MaxSessions == 0 {
		c.MaxSessions = 1_000_000
	}
	if c.MaxRetainedEvents == 0 {
		c.MaxRetainedEvents = 20_000_000
	}
	if c.MaxStateBytes == 0 {
		c.MaxStateBytes = config.DefaultMaxStateBytes
	}
	if c.ViewItems == 0 {
		c.ViewItems = 20
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = 50_000
	}
	if c.Params == nil {
		p := model.DefaultParams()
		c.Params = &p
	}
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no brokers"))
	}
	if c.SessionTimeout < 0 || c.MaxViewDelay < 0 || c.RescoreInterval < 0 || c.BatchPollInterval < 0 || c.CommitInterval < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if c.MaxSessions < 0 || c.MaxRetainedEvents < 0 || c.MaxStateBytes < 0 || c.ViewItems < 0 || c.MaxPollRecords < 0 {
		errs = append(errs, errors.New("limits must not be negative"))
	}
	if err := c.Params.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("speed config: %w", err)
	}
	return nil
}
