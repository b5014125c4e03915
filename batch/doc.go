// Package batch owns the batch layer's recompute: `lambdarec batch run` pins
// the current snapshot of the Iceberg `events` table, streams its events (a
// full run reads the Parquet column chunks of the data files iceberg-go
// plans, see pagescan.go; other reads go through iceberg-go's Arrow record
// batches), computes the model (internal/model) over the deduplicated
// events, writes the batch view as Iceberg tables and, last, one row in
// `batch_runs` naming the batch, its source snapshot and its boundary — the
// per-partition Kafka offsets the archiver recorded in that snapshot. The row
// is the commit point: a run that dies before it leaves the previous view
// current. It also loads published batches back (for the serving store and the
// speed layer) and runs batches on a cron schedule, never two at once.
//
// The archiver that fills `events` lives in batch/archive.
package batch
