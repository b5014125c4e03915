package speed

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/internal/model"
)

// Shared deltas: every member scores from the batch ⊕ the deltas of ALL
// partitions, not only those it owns.
//
// Each member publishes, for every partition p it owns, the co-visitation
// deltas of p's records past the served boundary B[p] to the compacted
// topic DeltasTopic, one record per pair: key (p, B[p], a, b), value (the
// pair's cumulative count from p's records, the position of p it reflects).
// A pair's count is a function of p's records up to that position (the
// replay argument of the package doc), so whoever owns p — the same process
// after a restart, another member after a rebalance — publishes the same
// value at the same position; compaction keeps the newest. Every member reads
// the whole topic and keeps, per key, the value with the greatest position:
// a new owner replaying p publishes older positions, which are ignored until
// it passes the old owner's last one. For the partitions it does not own, at
// the boundary of the batch it serves, a member adds these counts to its
// merged rows (remoteCov); for those it owns it counts its own records.
// Popularity and user deltas are not shared: scoring a session reads only
// co-visitation rows.

// sharedPair is an unordered pair of items, A < B.
type sharedPair struct{ a, b string }

func newSharedPair(a, b string) sharedPair {
	if a > b {
		a, b = b, a
	}
	return sharedPair{a, b}
}

// sharedCount is a published count and the source partition's position
// (next offset) it reflects.
type sharedCount struct{ count, pos int64 }

// sharedTomb is a key published under a boundary a handoff replaced: a
// tombstone deletes it from the compacted topic.
type sharedTomb struct {
	part int32
	bnd  int64
	pair sharedPair
}

// boundOf returns the served boundary of partition part, -1 when the batch
// does not cover it.
func (p *processor) boundOf(part int32) int64 { return boundIn(p.bound, part) }

func boundIn(b model.Boundary, part int32) int64 {
	if hi, ok := b[part]; ok {
		return hi
	}
	return -1
}

// applyRemote takes a published count. It returns false when it was older
// than what is held.
func (p *processor) applyRemote(part int32, bnd int64, k sharedPair, v sharedCount) bool {
	if bnd < p.boundOf(part) {
		return false // an older batch's: never needed again here
	}
	byB := p.remote[part]
	if byB == nil {
		byB = map[int64]map[sharedPair]sharedCount{}
		p.remote[part] = byB
	}
	m := byB[bnd]
	if m == nil {
		m = map[sharedPair]sharedCount{}
		byB[bnd] = m
	}
	old, had := m[k]
	if had && v.pos < old.pos {
		return false
	}
	if !had {
		p.remoteN++
	}
	m[k] = v
	if _, owned := p.parts[part]; owned || bnd != p.boundOf(part) {
		return true
	}
	diff := v.count - old.count
	if diff == 0 {
		return true
	}
	p.remoteCov.Add(k.a, k.b, diff)
	if diff > 0 {
		p.nb.bump(k.a, k.b, diff)
		p.nb.bump(k.b, k.a, diff)
	} else { // a lower count (state dropped under memory pressure): recompute
		p.nb.invalidate(k.a)
		p.nb.invalidate(k.b)
	}
	return true
}

// rebuildRemote sums the published counts of the partitions not owned here
// at the served boundary into a new remoteCov, and forgets those of older
// boundaries. The caller resets the merged rows.
func (p *processor) rebuildRemote() {
	p.remoteCov = model.NewCovisit()
	for part, byB := range p.remote {
		bnd := p.boundOf(part)
		for b, m := range byB {
			if b < bnd {
				p.remoteN -= len(m)
				delete(byB, b)
			}
		}
		if _, owned := p.parts[part]; owned {
			continue
		}
		for k, v := range byB[bnd] {
			p.remoteCov.Add(k.a, k.b, v.count)
		}
	}
}

// appendPublish appends the records that publish the owned partitions'
// changed pairs to dst (all pairs where pubAll), and forgets the changes.
func (p *processor) appendPublish(dst []*kgo.Record, topic string, nParts int32, all bool) []*kgo.Record {
	p.settleCov()
	p.deriveShares()
	for _, tb := range p.tombs {
		dst = append(dst, &kgo.Record{Topic: topic, Partition: tb.part % nParts,
			Key: encodeSharedKey(tb.part, tb.bnd, tb.pair.a, tb.pair.b)})
	}
	clear(p.tombs)
	p.tombs = p.tombs[:0]
	for id, ps := range p.parts {
		if ps.next < 0 {
			continue
		}
		bnd := p.boundOf(id)
		rec := func(a, b string, n int64) {
			dst = append(dst, &kgo.Record{Topic: topic, Partition: id % nParts,
				Key: encodeSharedKey(id, bnd, a, b), Value: encodeSharedValue(n, ps.next)})
			ps.published = true
		}
		if ps.pubAll || all {
			for pr := range ps.cov.Pairs() {
				rec(pr.A, pr.B, pr.Count)
			}
		} else {
			for k := range ps.pub.all() {
				a, b, pr := ps.pubPair(k)
				delete(ps.pubOld, pr) // published here, with its count now
				rec(pr.a, pr.b, ps.cov.GetID(a, b))
			}
			for pr := range ps.pubOld {
				rec(pr.a, pr.b, ps.cov.Get(pr.a, pr.b))
			}
		}
		ps.pubAll = false
		ps.clearPub()
	}
	return dst
}

// sharedKeyVersion starts every key, so the encoding can change.
const sharedKeyVersion = 1

// encodeSharedKey encodes (partition, boundary, a, b).
func encodeSharedKey(part int32, bnd int64, a, b string) []byte {
	k := make([]byte, 0, 1+5+10+2+len(a)+len(b))
	k = append(k, sharedKeyVersion)
	k = binary.AppendVarint(k, int64(part))
	k = binary.AppendVarint(k, bnd)
	k = binary.AppendUvarint(k, uint64(len(a)))
	k = append(k, a...)
	return append(k, b...)
}

func encodeSharedValue(count, pos int64) []byte {
	v := binary.AppendVarint(make([]byte, 0, 12), count)
	return binary.AppendVarint(v, pos)
}

var errSharedRecord = errors.New("malformed shared delta record")

// decodeShared decodes a record of the deltas topic.
func decodeShared(key, value []byte) (part int32, bnd int64, k sharedPair, v sharedCount, err error) {
	if len(key) < 1 || key[0] != sharedKeyVersion {
		return 0, 0, k, v, errSharedRecord
	}
	key = key[1:]
	p, n := binary.Varint(key)
	if n <= 0 || p < 0 || p > 1<<31-1 {
		return 0, 0, k, v, errSharedRecord
	}
	key = key[n:]
	bnd, n = binary.Varint(key)
	if n <= 0 {
		return 0, 0, k, v, errSharedRecord
	}
	key = key[n:]
	la, n := binary.Uvarint(key)
	if n <= 0 || la > uint64(len(key)-n) {
		return 0, 0, k, v, errSharedRecord
	}
	key = key[n:]
	k = sharedPair{string(key[:la]), string(key[la:])}
	if k.a >= k.b {
		return 0, 0, k, v, errSharedRecord
	}
	c, n := binary.Varint(value)
	if n <= 0 {
		return 0, 0, k, v, errSharedRecord
	}
	pos, m := binary.Varint(value[n:])
	if m <= 0 || n+m != len(value) {
		return 0, 0, k, v, errSharedRecord
	}
	return int32(p), bnd, k, sharedCount{count: c, pos: pos}, nil
}

// holdPublish stops tracking changed pairs: every pair is to be published
// when publishing resumes.
func (p *processor) holdPublish() {
	if p.sole {
		return
	}
	p.sole = true
	for _, ps := range p.parts {
		ps.pubAll = true
		ps.clearPub()
	}
}

// resumePublish ends holdPublish: changed pairs are tracked again, from
// shares derived from the sessions where they went stale while sole
// (deriveShare), so every record applied from now on counts in an
// up-to-date share.
func (p *processor) resumePublish() {
	if !p.sole {
		return
	}
	p.sole = false
	p.deriveShares()
}

// ensureDeltasTopic creates the compacted deltas topic with as many
// partitions as the events topic, if it does not exist, and returns its
// partition count. It notes the events topic's partition count (eventParts).
func (l *Layer) ensureDeltasTopic(ctx context.Context) (int32, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	adm := kadm.NewClient(l.admCl)
	td, err := adm.ListTopics(ctx, l.cfg.Topic, l.cfg.DeltasTopic)
	if err != nil {
		return 0, fmt.Errorf("list topics %s, %s: %w", l.cfg.Topic, l.cfg.DeltasTopic, err)
	}
	n := int32(1)
	if e, ok := td[l.cfg.Topic]; ok && e.Err == nil && len(e.Partitions) > 0 {
		n = int32(len(e.Partitions))
		l.mu.Lock()
		l.eventParts = n
		l.mu.Unlock()
	}
	if d, ok := td[l.cfg.DeltasTopic]; ok && d.Err == nil && len(d.Partitions) > 0 {
		return int32(len(d.Partitions)), nil
	}
	compact := "compact"
	resp, err := adm.CreateTopic(ctx, n, -1, map[string]*string{"cleanup.policy": &compact}, l.cfg.DeltasTopic)
	if err == nil {
		err = resp.Err
	}
	// kadm returns the topic's error as err too: a topic that exists (the
	// metadata above did not list it yet, or another member created it
	// meanwhile) is no error — such a member used to stay not ready for
	// good, without the shared deltas.
	switch {
	case err == nil:
		return n, nil
	case !errors.Is(err, kerr.TopicAlreadyExists):
		return 0, fmt.Errorf("create topic %s: %w", l.cfg.DeltasTopic, err)
	}
	// It exists: wait until the metadata lists it.
	for {
		td, err = adm.ListTopics(ctx, l.cfg.DeltasTopic)
		if err != nil {
			return 0, fmt.Errorf("list topic %s: %w", l.cfg.DeltasTopic, err)
		}
		if d, ok := td[l.cfg.DeltasTopic]; ok && d.Err == nil && len(d.Partitions) > 0 {
			return int32(len(d.Partitions)), nil
		}
		if !kafka.Sleep(ctx, 100*time.Millisecond) {
			return 0, fmt.Errorf("topic %s: no partitions listed: %w", l.cfg.DeltasTopic, ctx.Err())
		}
	}
}

// When publishDeltas publishes.
const (
	pubTick   = iota // at most once per RescoreInterval
	pubFinal         // now (the layer stops)
	pubRevoke        // now, and everything held if this member owned all
)

// publishDeltas produces the owned partitions' changed pairs. Production is
// asynchronous; after a failure the next call publishes every pair again.
//
// A member that owns every partition of the topic has no one to publish for:
// it only notes that everything is to be published (holdPublish), which it
// does when a revocation shows that another member joined.
func (l *Layer) publishDeltas(ctx context.Context, when int) {
	if l.cl == nil || l.deltaParts == 0 {
		return
	}
	if sole := l.eventParts > 0 && len(l.proc.parts) >= int(l.eventParts); sole && when != pubRevoke {
		l.proc.holdPublish()
		return
	}
	l.proc.resumePublish()
	now := time.Now()
	if when == pubTick && now.Sub(l.lastPublish) < l.cfg.RescoreInterval {
		return // coalesced: a pair changed many times is published once
	}
	l.lastPublish = now
	all := l.publishFailed.Swap(false)
	l.pubBuf = l.proc.appendPublish(l.pubBuf[:0], l.cfg.DeltasTopic, l.deltaParts, all)
	for _, r := range l.pubBuf {
		l.cl.Produce(ctx, r, l.published)
	}
	l.m.deltasPublished.Add(float64(len(l.pubBuf)))
	clear(l.pubBuf)
}

// published is the produce callback of publishDeltas.
func (l *Layer) published(_ *kgo.Record, err error) {
	if err != nil {
		l.publishFailed.Store(true)
		l.m.deltaErrors.Inc()
		l.log.Warn("publish shared deltas", "topic", l.cfg.DeltasTopic, "err", err)
	}
}

// consumeDeltas reads the whole deltas topic until ctx ends and applies
// what the members published. It marks itself caught up (deltasReady) once
// it reached the end offsets the topic had when it started.
func (l *Layer) consumeDeltas(ctx context.Context) {
	cl, err := kafka.Connect(l.cfg.Brokers, l.cfg.Security,
		kgo.ConsumeTopics(l.cfg.DeltasTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		l.log.Error("shared deltas consumer", "err", err)
		return
	}
	defer cl.Close()
	var ends map[int32]int64
	for ctx.Err() == nil && ends == nil {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		o, err := kadm.NewClient(cl).ListEndOffsets(lctx, l.cfg.DeltasTopic)
		cancel()
		if err == nil && o.Error() == nil {
			ends = map[int32]int64{}
			o.Each(func(e kadm.ListedOffset) { ends[e.Partition] = e.Offset })
			break
		}
		l.log.Warn("list end offsets of the shared deltas", "topic", l.cfg.DeltasTopic, "err", errors.Join(err, o.Error()))
		if !kafka.Sleep(ctx, time.Second) {
			return
		}
	}
	pos := map[int32]int64{}
	caught := func() bool {
		for p, e := range ends {
			if pos[p] < e {
				return false
			}
		}
		return true
	}
	l.deltasReady.Store(caught())
	bo := kafka.NewBackoff()
	var refreshed time.Time
	for ctx.Err() == nil {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if !l.deltasReady.Load() {
			// Until caught up, poll a second at a time and refresh the
			// metadata meanwhile: a partition the client has not
			// discovered yet is otherwise fetched only after its next
			// periodic refresh, and the member is not ready until then.
			if time.Since(refreshed) >= time.Second {
				cl.ForceMetadataRefresh()
				refreshed = time.Now()
			}
			pctx, cancel = context.WithTimeout(ctx, time.Second)
		}
		fs := cl.PollFetches(pctx)
		cancel()
		if fs.IsClientClosed() {
			return
		}
		failed := false
		fs.EachError(func(_ string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			failed = true
			l.log.Warn("fetch shared deltas", "partition", p, "err", err)
		})
		bad := 0
		l.mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			pos[r.Partition] = r.Offset + 1
			if r.Value == nil {
				return // a tombstone
			}
			part, bnd, k, v, err := decodeShared(r.Key, r.Value)
			if err != nil {
				bad++
				return
			}
			l.proc.applyRemote(part, bnd, k, v)
		})
		l.mu.Unlock()
		if bad > 0 {
			l.log.Warn("malformed shared delta records", "topic", l.cfg.DeltasTopic, "records", bad)
		}
		if !l.deltasReady.Load() && caught() {
			l.deltasReady.Store(true)
		}
		if failed {
			if !kafka.Sleep(ctx, bo.NextBackOff()) {
				return
			}
		} else {
			bo.Reset()
		}
	}
}
