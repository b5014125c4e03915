package archive

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lambdarec/lambdarec/internal/kafka"
)

// metrics are the archiver's Prometheus metrics.
type metrics struct {
	archived      prometheus.Counter
	deadLettered  prometheus.Counter
	commits       prometheus.Counter
	commitRetries prometheus.Counter
	commitSeconds prometheus.Histogram
	lag           *prometheus.GaugeVec
	fetchErrors   prometheus.Counter
	flushErrors   prometheus.Counter
	faulted       prometheus.Gauge
	faults        *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	records := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lambdarec_archive_records_total",
		Help: "Kafka records handled by the archiver, by outcome: archived (committed to Iceberg) or dead_lettered.",
	}, []string{"outcome"})
	m := &metrics{
		archived:     records.WithLabelValues("archived"),
		deadLettered: records.WithLabelValues("dead_lettered"),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lambdarec_archive_commits_total",
			Help: "Iceberg snapshots committed by the archiver.",
		}),
		commitRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lambdarec_archive_commit_retries_total",
			Help: "Iceberg commits retried after a conflict with another writer.",
		}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "lambdarec_archive_commit_seconds",
			Help:    "Time to commit one micro-batch to Iceberg, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lambdarec_archive_lag_records",
			Help: "Records in the Kafka partition (up to its high watermark) not yet committed to Iceberg.",
		}, []string{"partition"}),
		fetchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lambdarec_archive_fetch_errors_total",
			Help: "Kafka fetch errors; each is followed by a backoff.",
		}),
		flushErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "lambdarec_archive_flush_errors_total",
			Help: "Micro-batch flushes (dead letters, data files, commit) that failed and were retried after a backoff.",
		}),
		faulted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lambdarec_archive_stopped_partitions",
			Help: "Partitions stopped because their log no longer continues the offsets the table holds.",
		}),
		faults: kafka.NewFaultGauge("archive"),
	}
	var errs []error
	for _, c := range []prometheus.Collector{records, m.commits, m.commitRetries, m.commitSeconds, m.lag, m.fetchErrors, m.flushErrors, m.faulted, m.faults} {
		errs = append(errs, reg.Register(c))
	}
	return m, errors.Join(errs...)
}
