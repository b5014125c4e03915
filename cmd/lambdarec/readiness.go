package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/lambdarec/lambdarec/internal/lakehouse"
	"github.com/lambdarec/lambdarec/internal/store"
	"github.com/lambdarec/lambdarec/serving"
)

// The /readyz checks of the roles without an HTTP API (archive, speed):
// each names every dependency the role needs to do its work.

// readyCheck is one dependency check; nil when it is met.
type readyCheck func(ctx context.Context) error

// allReady runs checks in order and joins their failures.
func allReady(checks ...readyCheck) readyCheck {
	return func(ctx context.Context) error {
		var errs []error
		for _, c := range checks {
			if err := c(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
}

// kafkaTopicReady checks that a broker answers a metadata request for topic
// (never served from the client's cache) and that the topic has partitions.
func kafkaTopicReady(cl *kgo.Client, topic string) readyCheck {
	return func(ctx context.Context) error {
		req := kmsg.NewPtrMetadataRequest()
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return fmt.Errorf("kafka: metadata: %w", err)
		}
		for _, t := range resp.Topics {
			if t.Topic == nil || *t.Topic != topic {
				continue
			}
			if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
				return fmt.Errorf("kafka: topic %s: %w", topic, err)
			}
			if len(t.Partitions) == 0 {
				return fmt.Errorf("kafka: topic %s: no partitions", topic)
			}
			return nil
		}
		return fmt.Errorf("kafka: topic %s: not in metadata", topic)
	}
}

// icebergReady checks that the catalog answers for the events table.
func icebergReady(lake *lakehouse.Lakehouse) readyCheck {
	return func(ctx context.Context) error {
		if _, err := lake.LoadTable(ctx, lakehouse.EventsTable); err != nil {
			return fmt.Errorf("iceberg: %w", err)
		}
		return nil
	}
}

// storeReady checks that the serving store answers, bypassing caches where
// the store can (serving.Pinger).
func storeReady(st store.Store) readyCheck {
	return func(ctx context.Context) error {
		var err error
		if p, ok := st.(serving.Pinger); ok {
			err = p.Ping(ctx)
		} else {
			_, _, err = st.CurrentBatch(ctx)
		}
		if err != nil {
			return fmt.Errorf("serving store: %w", err)
		}
		return nil
	}
}

// roleReady turns a component's own readiness (its assigned partitions
// replayed, no partition stopped) into a check naming the role.
func roleReady(name string, ready func() bool) readyCheck {
	return func(context.Context) error {
		if !ready() {
			return fmt.Errorf("%s: not ready (replaying, or a partition is stopped: see /metrics and /v1/status)", name)
		}
		return nil
	}
}
