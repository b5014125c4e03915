package config

import (
	"strings"
	"time"
)

// The keys that keep the speed layer exact with several members and when a
// view is read (fields of the Speed section in config.go):
//
//   - speed.rescore_interval: how often the views of live sessions whose
//     co-visitation rows changed (by other sessions' records or other
//     members' deltas) are scored again and rewritten. A served view
//     reflects every record the layer consumed up to about this long (plus
//     speed.max_view_delay) before the read. 0 turns rescoring off (and
//     the index of the rows each view read): stored views are then scored
//     at their sessions' own records only, and only answers scored at read
//     time (serve.speed_scorers, internal/readscore) are exact when read;
//     the deltas are still published every DefaultRescoreInterval.
//     Default: 250ms (DevRescoreInterval in `lambdarec dev`).
//   - speed.deltas_topic: the compacted Kafka topic through which the
//     members share their partitions' co-visitation deltas, so every member
//     scores from the deltas of all partitions. Created if missing.
//     Default: empty, meaning "<kafka.topic>.speed-deltas".

// DefaultRescoreInterval is the default of speed.rescore_interval.
const DefaultRescoreInterval = 250 * time.Millisecond

// validateSpeedExact checks the keys of this file.
func (c *Config) validateSpeedExact(bad func(key, format string, args ...any)) {
	if c.Speed.RescoreInterval < 0 {
		bad("speed.rescore_interval", "must be 0 (rescoring off) or positive, got %s", c.Speed.RescoreInterval)
	}
	t := c.Speed.DeltasTopic
	if t == "" {
		return
	}
	if t == c.Kafka.Topic || t == c.Kafka.DLQTopic {
		bad("speed.deltas_topic", "must differ from kafka.topic and kafka.dlq_topic, got %q", t)
	}
	if len(t) > 249 || strings.Trim(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != "" {
		bad("speed.deltas_topic", "must be a Kafka topic name (letters, digits, '.', '_', '-', at most 249), got %q", t)
	}
}
