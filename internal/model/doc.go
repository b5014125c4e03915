// Package model owns lambdarec's recommendation model, the one piece of code
// the batch layer and the speed layer share so their answers agree.
//
// # What it computes
//
// From interaction events (Event: event id, session, user, item, kind, event
// time, Kafka partition and offset) the model keeps three aggregates:
//
//   - Covisit: weighted co-visitation counts. For every unordered pair of
//     deduplicated events a, b of the same session with different item ids and
//     |time_a − time_b| ≤ Params.Window (event time, so late and out-of-order
//     events are handled deterministically), Params.PairWeight(kind_a, kind_b)
//     is added to C[item_a][item_b] and to C[item_b][item_a].
//   - Popularity: Pop[item] += Params.Weight(kind) per deduplicated event.
//   - Users: per (user, item) the latest event time, the summed weight and
//     whether the user bought it (for per-user recommendations and exclusion).
//
// plus Stats (accepted, duplicate and capped event counts).
//
// # The exactness contract
//
// Every aggregate is an int64 sum (or, for Users, a max / sum / or), never a
// float, so aggregates form a commutative monoid and merge exactly:
//
//	Build(events ≤ B) ⊕ speed deltas(events > B) == Build(all events)
//
// bit for bit, for any per-partition offset boundary B. This holds because
// every contribution has exactly one owner event:
//
//   - Records are keyed by session_id, so a session's events live in one Kafka
//     partition and their offsets order them. Within a session events are
//     processed in (partition, offset) order.
//   - Dedup: an event id counts once per session, at its first occurrence
//     (lowest offset); later copies contribute nothing (Duplicate). Event ids
//     are compared by a fixed 64-bit FNV-1a hash, identically in both layers.
//   - Cap: only the first Params.MaxSessionEvents distinct events of a session
//     (in offset order) count; later ones contribute nothing (Capped). This
//     bounds session state and the quadratic pair work for bot sessions.
//   - A pair is owned by whichever of its two events has the higher offset;
//     popularity and user contributions are owned by the event itself.
//
// So a batch over a snapshot whose boundary is B counts exactly the
// contributions owned by events with offset ≤ B[partition], and the speed layer
// counts those owned by events past B: a new event pairs with every earlier
// event of its session, including events already in the batch. The speed layer
// therefore feeds a session's batch-covered events to Session.Add with a nil
// emit (to know them) and applies the events past the boundary with
// Model.Apply (to count them).
//
// # API
//
//   - Params / DefaultParams: weights by kind (1, 2, 4, 8), pair rule (min),
//     window (30m), MaxSessionEvents (500), RecentItems (10), Neighbors (50).
//     Usable as a YAML configuration section.
//   - Event, EventFromProto, EventIDHash: the model's view of a record.
//   - Builder (NewBuilder, Add, Build) and Recompute: the full recompute over
//     events given in any order — the batch layer and the tests' reference.
//     Pair contributions are radix-sorted and reduced in chunks into a CSR, so
//     memory follows the distinct pairs, not the contributions.
//   - Session (NewSession, Add, AddID, Recent, Bought, Covered): one
//     session's known events; Add emits the pair contributions owned by the
//     new event and ignores replays (Stale); AddID emits them by the
//     caller's item ids (IDEmitter), which the session keeps per event.
//   - Model (New, Apply, ApplyPast, Merge, Sub, Equal, Diff, Stats): the
//     aggregates together. The speed layer applies events past the boundary
//     with Apply; on a batch handoff it rebuilds its deltas for the new
//     Boundary with ApplyPast over the sessions it holds (or subtracts with
//     Sub).
//   - Covisit, Popularity, Users: the aggregates, each mergeable. Covisit and
//     Users have a bulk-built base and a hash overlay for incremental changes
//     (open-addressing tables: pairTable, userTable); Row,
//     TopK, Rows (what the batch publishes), Pairs, CacheTopK.
//   - Neighbors (interface) and its optional capability TopNeighbors;
//     ItemCount and the model's order: count desc, item asc.
//   - Scorer (Score, RecommendSession, RecommendUser) and Fill (popular
//     fallback): recommendations, score desc then item asc. Scoring takes the
//     top Params.Neighbors of each recent item's row itself, so a source
//     returning full rows (batch row ⊕ deltas, in any order) and one returning
//     exact top-K rows score the same, bit for bit.
//   - Evaluate, EvaluatePredictor, ModelPredictor, PopularityPredictor,
//     HoldOut: Recall@K and MRR@K of next-item prediction on held-out
//     sessions (`lambdarec eval` runs them on the generator's clickstream).
package model
