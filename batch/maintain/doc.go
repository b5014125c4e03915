// Package maintain owns the upkeep of lambdarec's Iceberg tables and the
// retention of every tier: `lambdarec maintain` runs one pass, and `batch
// schedule` and `dev` run passes on maintenance.cron, never two at once in a
// process.
//
// A pass does, in order, for the events table:
//
//   - pins: removes the pin tags of batch runs older than
//     maintenance.pin_max_age (runs that died; see lakehouse.Pin);
//   - retention: deletes whole day partitions of events older than
//     retention.events (a delete snapshot that carries the stream position);
//   - compaction: bin-packs the data files smaller than 75% of
//     maintenance.target_file_size within each day partition into files of
//     about that size (iceberg-go's table/compaction planner and
//     ExecuteCompactionGroup), committed as one rewrite snapshot; within a
//     partition only files that at least half-match the size of the smaller
//     ones taken with them are rewritten (tiered), so a pass with no new data
//     rewrites nothing and today's growing file is not rewritten at every
//     pass: a byte is rewritten O(log(target / small file)) times;
//   - manifests and expiry, one commit: merges the manifests of the
//     current snapshot (Transaction.RewriteManifests), expires snapshots
//     older than maintenance.snapshot_retention, keeping the current one and
//     every pinned one, and deletes the manifest lists, manifests and data
//     files only they referenced; it also sets the table properties that
//     make every commit delete the metadata.json versions past
//     MetadataVersionsKept (on tables created before);
//   - orphans: deletes files under the table location that no snapshot or
//     metadata file references and that are older than
//     maintenance.orphan_min_age (left by crashed or lost commits), except
//     the metadata.json files iceberg-go's delete-after-commit still
//     deletes: from MetadataVersionsKept versions below the oldest one in
//     the metadata log on (metadataFloor). A written file whose commit is
//     in flight is unreferenced too: the step deletes under the table's
//     commit lock (lakehouse.Exclusive), on the table loaded under it, and
//     a commit of this process whose data file it deleted fails with
//     lakehouse.ErrAddedFileGone (the writer writes again) instead of
//     landing a table that references a missing file; commits of other
//     processes rely on orphan_min_age alone, which is why the
//     configuration refuses one below config.OrphanMinAgeFloor (15m)
//     unless maintenance.orphan_min_age_force is set.
//
// The other tables of the namespace (batch views, batch_runs) get the
// manifests, expiry, orphans and metadata steps. The serving store gets its
// hot retention: session views older than retention.hot are dropped.
//
// Invariants it keeps:
//
//   - The stream position survives everything: each snapshot a pass commits
//     carries every lambdarec.* summary property of its parent
//     (lakehouse.WithCarried), so the newest snapshot always holds the Kafka
//     offsets and expiring its ancestors cannot send the archiver back. The
//     one exception is the replace snapshot iceberg-go's RewriteManifests
//     stages (it takes no summary properties): it is committed together with
//     an empty append that carries them, in one atomic commit, so it is never
//     the current snapshot.
//   - Every commit of a pass moves the branch (an expiry or a property change
//     is committed with an empty append that carries the properties), so a
//     writer's commit built on the table before it conflicts and is rebuilt
//     on the reloaded table. Accepted on the older table, it would delete
//     again the metadata files the pass's commit deleted (iceberg-go deletes
//     what left the log between a commit's base and its result), and
//     iceberg-go would log a warning for each through the standard log
//     package.
//   - A commit that races an archive commit is rebuilt on the reloaded table
//     (lakehouse.Commit); the compacted files are written once, only the
//     commit is redone. Nothing is lost or doubled: the rewrite replaces
//     exactly the files it read, which the archive never removes.
//   - A batch run pins the snapshot it scans (a tag; see lakehouse.Pin), and
//     expiry keeps every tagged snapshot with its files, so a pass never
//     pulls files from under a running batch.
package maintain
