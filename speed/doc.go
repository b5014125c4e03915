// Package speed owns lambdarec's speed layer: a Kafka consumer group on
// `events` that keeps per-session state, counts the model contributions of the
// records past the boundary of the batch currently served (the deltas), and
// after each event writes the session's recommendations — scored from the
// batch model plus the deltas by the shared model code — to the serving store
// as the real-time view. It also scores a session on request, at read time
// (Layer.ScoreRecent, the internal/readscore contract; readscore.go): from
// the recent items and purchases its stored view lists, over the member's
// merged rows as they are when the read is served. Reads share the rows
// with each other and are let in at safe points within a poll's processing
// (layerMu, yieldToReads).
//
// # Exactness
//
// The layer follows the model's ownership rule (internal/model): a record at
// or below the batch boundary B is fed to its session with Session.Add (known,
// not counted), a record past B with Model.Apply (counted in the deltas). So
// at any moment batch ⊕ deltas equals a full recompute over every record
// consumed, and a session's recommendations equal those computed from that
// recompute. Neighbors merges a batch row with a delta row exactly in the
// top-K region (deltas are never negative).
//
// # Batch handoff
//
// A BatchSource is polled; on a new batch id the layer rebuilds its deltas
// for the new boundary from the sessions it holds (Model.ApplyPast), then
// switches model and deltas in one step between two polls. Kafka consumption
// is not paused, nothing is re-read. To make that rebuild exact, a session
// that expires or is evicted while it still has records past the boundary is
// retained (without its view) until a batch covers it; the retained events are
// bounded by MaxRetainedEvents, and the estimated memory of live and retained
// sessions together by MaxStateBytes (oldest retained dropped first, then the
// least recently active live sessions evicted; the deltas themselves are not
// sessions and are bounded by the next handoff, not by MaxStateBytes).
//
// # Restart and rebalance: the replay horizon
//
// The offset the layer commits for a partition is not its position but its
// replay horizon: the first offset of the oldest session it still holds in
// that partition (live or retained), or its position when it holds none.
// Whoever consumes the partition next — this process after a crash, or
// another member after a rebalance — starts there and rebuilds exactly the
// same sessions and deltas by replaying, because the state is a function of
// the partition's records alone: sessions expire by record time (Kafka
// timestamps, not the wall clock), validation uses the record timestamp as its
// clock, and records at or before a session's last one are ignored (Stale).
// Revocation flushes views and dead letters, commits the horizon and drops
// the partition's sessions, then rebuilds the deltas of the partitions kept.
// From the commit point on, the replayed state is the uninterrupted run's
// (TestReplayFromHorizonRebuildsTheState, record timestamps in offset order;
// the expiry clock of a replay starts at its first record); before it, it is
// not: a session forgotten before the commit (expired while covered by the
// batch) whose first records lie before the horizon is replayed from a
// suffix of its records (its earlier items are missing, an event id repeated
// across the horizon is accepted again). Its views would differ from the
// stored ones and, carrying a later UpdatedAt (a view's version is the pair
// (offset, UpdatedAt)), replace them. So the commit's metadata also carries
// the position up to which the member had written the partition's views
// ("lambdarec-speed views-written=N"); the next owner writes no view of a
// record before it, and there scores every live session of the partition
// once, from the state that equals the previous owner's
// (TestReplayKeepsTheWrittenViews). A commit without that metadata (an older
// version's) replays as before, writing views from the horizon on.
// The layer sends no dead letters: it counts invalid records
// (lambdarec_speed_invalid_records_total) and leaves them to the archive,
// which owns the dead-letter topic and sends each once, so a replay never
// repeats one.
//
// # The log the offsets belong to
//
// Offsets mean something only within one log. The layer notes the topic ID
// when it starts and checks the broker's log of each owned partition —
// after any fetch error (at most once a second), after an assignment and
// every 30 seconds — against the topic ID and against the highest offset it
// holds of the partition: the served batch's boundary and how far it has
// read (kept across rebalances). A log that does not continue them (the
// topic was recreated; the log ends at or before them because the broker
// lost its data) would otherwise be read as if it did: its records would
// compare as covered by the boundary and be left out of the deltas. Such a
// partition is stopped instead (fetching paused, its records dropped), and
// reported: Faults, Ready false, the gauge lambdarec_speed_partition_faults,
// one ERROR line per partition a minute at most. It resumes if its log comes
// back. Fetch errors back off (exponential with jitter, capped at 10 s), a
// failed commit delays the next one the same way, and warnings are limited
// to one line a second per message.
//
// What is not exact, by design: a session evicted under memory pressure
// (MaxSessions, MaxStateBytes) or dropped from retention (MaxRetainedEvents,
// MaxStateBytes) is forgotten; if
// it continues, its new records neither pair with nor deduplicate against
// the forgotten ones until a batch covers them. The same holds for a session
// that resumes after SessionTimeout of idleness (its pairs rarely matter:
// the co-visitation window is as long as the timeout). Metrics count both.
//
// # N members: shared deltas
//
// A member owns some partitions; a session's recommendations read
// co-visitation rows that records of every partition change. So each member
// publishes, per owned partition p, the pair counts of p's records past the
// served boundary B[p] to the compacted topic DeltasTopic (key: p, B[p] and
// the pair; value: the cumulative count and the position of p it reflects),
// and every member reads the whole topic: for the partitions it does not
// own, at the boundary of the batch it serves, it adds those counts to its
// merged rows. Counts are sums owned by the records that produced them and a
// function of p's records up to the position (the replay argument above), so
// a key's newest value is exact and nothing is counted twice: a new owner
// replaying p after a rebalance publishes older positions, which readers
// ignore (they keep, per key, the greatest position) until it passes where
// the old owner stopped; the old owner publishes (and flushes) before it
// commits its horizons on revocation. A member counts its own partitions
// from its own records, never from the topic. After a handoff each partition
// is published again under the new boundary; keys of older boundaries are
// deleted with tombstones by the owner at the handoff (readers ignore
// tombstones and drop older boundaries' keys at their own handoff). Until a
// member has read the topic up to its end offsets at start it is not ready.
// Popularity and user deltas are not shared: a session's view reads only
// co-visitation rows. Publication is coalesced: at most once per
// RescoreInterval (forced before a revocation and at stop). A member that
// owns every partition publishes nothing (no one reads it) until a
// revocation shows another member joined; it then publishes all it holds.
// Meanwhile it does not count its partitions' shares either: it derives
// each from the partition's sessions (their records past the boundary, as a
// rebuild does) when it publishes again or a handoff needs the old
// boundary's keys for its tombstones; at a handoff it tombstones the old
// boundary's keys only if it published there or the topic holds keys of
// the partition there (a previous owner's, read from the topic); otherwise
// none, where it used to queue its whole share as tombstones at every
// handoff until another member joined. Bound: another
// member's records reach this member's rows within RescoreInterval plus its
// poll (about idleWait, 100 ms, when idle) plus the produce and fetch round
// trip of the topic, and its views RescoreInterval later.
//
// # Real-time view, exact when read
//
// A poll's records are decoded in parallel, then applied in order; a
// record marks its session's view to be written. Views are scored and
// written together once per flush tick: when
// the oldest unwritten update is min(MaxViewDelay, 1ms) old — MaxViewDelay
// old while the layer is 10,000 records or more behind, so that a backlog's
// records of one session are more often scored once — (after a poll;
// the poll waits no longer than that; after a poll of fewer than 64
// records, at once) or, within a long poll (checked every 512 records),
// MaxViewDelay old. So several
// records of a session within one tick cost one scoring and one write, and
// a rescoring due in that tick shares the pass. A view is
// scored as of every record processed when it is scored (its own newest one
// and whatever else came before the flush), by model.Scorer.ScoreDense
// straight from the maintained merged rows by item id (no copy of a row, no
// item string hashed; it equals Scorer.RecommendSession bit for bit). Each
// view carries its session's newest record's offset, the newest event time,
// the user and the purchases.
//
// Only what needs the state in order stays on the processing goroutine
// (applying records, interning a view's rows). Within a poll of 256 records
// or more, each pair contribution is queued: a goroutine of its own adds
// the queue to the deltas' pair counts in order while the records are
// applied, and before the rows are read the maintained rows are bumped on
// up to GOMAXPROCS goroutines, rows sharded by item, each worker taking its
// rows' bumps in record order: the deltas get the same additions in the
// same order, each row the same updates in the same order, and the changed
// rows are noted in the serial order (TestParallelApplyEqualsSerial,
// applypar.go). The session's window, dedupe, interning, expiry and
// eviction stay on the processing goroutine. A flush of many views is
// scored on up to GOMAXPROCS goroutines against a state frozen meanwhile —
// each view's rows materialized first, then read only, each worker with a
// scorer of its own — bit for bit what serial scoring gives
// (TestParallelScoringEqualsSerial, scorepar.go). The processing goroutine
// is one of the workers and the views are claimed one at a time (a large
// poll's records, for decoding, in blocks): it waits only for the views
// claimed, never for a worker not yet scheduled. A view's Items come from
// chunks reused once the flush's views are written (a store copies what it
// keeps of a view but its Explanation); a failed write's views keep theirs
// (TestFailedViewsKeepTheirItems). The views are written on
// a goroutine of their own while the next records are processed, one write
// in flight; a commit waits for it, so a replay horizon is committed only
// after the views of every record it covers are written
// (TestViewWritesFailedAreRetriedBeforeCommit). A partition's share of the
// deltas, published for the other members, and the deltas' user
// contributions (read by no view) are added after each poll on goroutines
// of their own (covlog.go), overlapping the scoring; every reader of a share
// or of the deltas' users waits for it first.
//
// Other sessions' records (and other members' deltas) keep changing the rows
// a quiet session's view was scored from. Scoring indexes the live session
// under the merged rows it read; every RescoreInterval/8 the sessions whose
// rows changed since (their maintained top K: a count in it, or its
// membership) are queued, and marked to be scored again and rewritten by
// their deadline — RescoreInterval after the collection before, when their
// rows could first have changed — evenly over the eighth before it, a share
// after each poll (as late as the bound allows, so one rescoring covers a
// whole interval's changes of a session's rows; and the rescorings go out
// with each flush's fresh views, not in one burst that
// every record behind it waits for) — unless the view was scored
// after the row's last change (each row change is stamped with the count of
// views scored so far; a session's own record rescores it, and the changes
// its pairs made to the rows it reads are then already in its view) — and a
// handoff, an assignment or a revocation rescores every live session (a
// revocation first scores the queued sessions of the partitions it hands
// over, before its commit; the kept ones are left to the drop's rescoring,
// so none is scored twice). A collection reads what it decides on (a watcher's view stamp, whether it
// is queued) from one dense array by session slot and visits only the
// sessions it queues: a popular row is watched by thousands of sessions.
// Rescoring is
// bounded by the work of the stream: each collection's share is at most one
// session per four records processed since the last one (eight while the
// layer is behind: Layer.behind), plus 62 (500 per
// RescoreInterval), oldest changed first; the rest waits
// (lambdarec_speed_rescore_backlog). After a poll that shows the layer
// behind (Layer.pollBehind) the shares due mark at most one session per
// eight of its records and the rest is spread again (Layer.markLimit):
// a stall of the loop no longer brings every share due meanwhile at once.
// The bound
// below holds while that backlog is empty; with a backlog, a view is stale
// by at most the oldest queued session's wait since its rows could first
// have changed (processor.queueWait, lambdarec_speed_rescore_wait_seconds),
// which then takes RescoreInterval's place in it. A rewrite keeps
// the offset and carries a later UpdatedAt: the store's version is (offset,
// updated at). So a served view equals what a full recompute over every
// record consumed gives the session, as of the records this member consumed
// up to RescoreInterval + MaxViewDelay (plus the store write) before the
// read (the flush tick is within MaxViewDelay: coalescing does not widen the
// bound; a session's own newest record is in its view within MaxViewDelay), and, for other members' partitions, as of what they published (see
// above). TestServedExactWhenRead and TestServedExactWithThreeMembers hold
// the layer to it.
//
// Rescoring can be turned off (Config.NoRescore, speed.rescore_interval: 0):
// no view is indexed under its rows, none is rescored, and the changed rows
// are forgotten after each poll; a stored view is then exact as of its
// session's last record only. That is for members whose every read is
// scored at read time (internal/readscore: the serving layer scores a live
// session from its stored view's recent items and the member's merged
// rows), where a stored view is only the fallback answer (TestRescoreOff).
//
// The views' scoring can be turned off too (Config.NoViewScores,
// speed.score_views: false, dev's default): a flush then writes each
// changed session's view with the inputs a read scores it from only — its
// recent items (an explanation without contributions), purchases, user,
// event time and position — and no items; nothing is scored, explained or
// materialized per view, and rescoring is off (TestViewScoresOff,
// TestScoreRecentExactWhenReadUnscored).
//
// Decoding reads only the fields the layer needs, straight from the
// protobuf encoding (decode.go): no message, no device or location maps are
// built, and ids become strings only when new (session ids come from the
// state, users and items from an intern table). Whatever is not in the shape
// producers write, or invalid, is decoded by schemas.Decode, which decides;
// so a record is valid here exactly when it is for the archive and the batch
// (FuzzDecodeFast). Pair contributions reach the deltas and the maintained
// rows by interned ids, without string hashing on the way.
//
// Scoring reads merged rows that the layer maintains: the first time an item
// is needed after a rebuild of the deltas, its top K of batch ⊕ deltas is
// computed; from then on every pair contribution updates it (counts only grow
// between rebuilds, so the maintained top K stays exact) — the whole delta
// row, which grows with the time since the batch, is never merged again.
//
// A view written while records flow reflects how far each partition had
// been consumed when it was scored, which no two runs share; once
// consumption settles, every view (rescored) is the same in every run.
// Sessions, deltas, and recommendations computed at any quiescent point are
// deterministic.
//
// # State and the garbage collector
//
// Every collection cycle marks the sessions the layer holds, so what a
// session costs the collector is a cost of every cycle: its pointers, its
// objects and its size. A session's events hold no pointer (their ids are
// indexes into the session's distinct strings), the rows' watcher lists
// hold session slots (uint32) rather than pointers, and a session's fields
// that hold pointers come before those that hold none. BenchmarkStateGC
// reports, per session held after a 20 s run at 50,000 events/s, the
// scannable bytes and objects of the state and the wall and CPU time of a
// forced collection.
//
// How long a cycle's mark phase lasts grows with the state: a 20 s run of
// BenchmarkLatency at 50,000 events/s ends with ~118k live sessions and
// 350–400 MB live, and its last mark phases take 50–130 ms at load 3–4
// (150–550 ms at load 9), against 10–35 ms in its first 5 s. While one
// runs the loop scores a view 1.5–2× and applies a record 1.2–1.5× slower,
// and most of the slowest records of such a run (73–100% of those at or
// past the p99, in 5 runs) waited through one (GODEBUG=gctrace=1 with
// SPEED_BENCH_TRACE places them). How often cycles come is set by the bytes
// allocated, so the loop reuses its big transient buffers: the consuming
// client decompresses fetched batches and decodes their records into
// pooled slices (fetchPool, recycled once a poll is processed), and the
// item arena frees every chunk a flush filled once its views are written
// (itemArena).
package speed
