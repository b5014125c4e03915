// Package listcache owns the per-process cache of batch-view lists that the
// external serving-store backends (ClickHouse, Redis) keep in front of their
// server. A batch view never changes once published, so an entry keyed by its
// batch id is exact for as long as it lives: the cache needs no invalidation,
// and entries of batches that are no longer current are never read again and
// age out of the LRU.
package listcache

import (
	"hash/maphash"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/lambdarec/lambdarec/internal/store"
)

// Kind says which list of a batch view an entry holds.
type Kind uint8

// The lists of a batch view.
const (
	Neighbors Kind = 1
	UserRecs  Kind = 2
	Popular   Kind = 3
	// UserItems: what a user's recommendations were scored from
	// (store.BatchView.UserItems), as a list whose scores are the ranks.
	UserItems Kind = 4
)

// FromItems is items as a list of kind UserItems: each item with its rank
// as its score.
func FromItems(items []string) []store.Scored {
	if len(items) == 0 {
		return nil
	}
	l := make([]store.Scored, len(items))
	for i, it := range items {
		l[i] = store.Scored{Item: it, Score: float64(i)}
	}
	return l
}

// Items is the items of a list of kind UserItems, in order.
func Items(l []store.Scored) []string {
	if len(l) == 0 {
		return nil
	}
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = s.Item
	}
	return out
}

// Key names one list of one batch.
type Key struct {
	Batch string
	Kind  Kind
	Key   string
}

// String is a compact unique form of k, for singleflight groups.
func (k Key) String() string { return string([]byte{byte(k.Kind)}) + k.Batch + "\x00" + k.Key }

// Cache is a least-recently-used cache of batch-view lists, sharded so that
// parallel readers do not queue on one lock. A nil list is cached too:
// unknown keys stay off the server as well. It is safe for concurrent use.
type Cache struct {
	seed   maphash.Seed
	shards [shards]*lru.Cache[Key, []store.Scored]
}

const shards = 16

// New returns a cache of about entries lists (at least one per shard).
func New(entries int) *Cache {
	c := &Cache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i], _ = lru.New[Key, []store.Scored](max(1, entries/shards)) // errors only on size <= 0
	}
	return c
}

func (c *Cache) shard(k Key) *lru.Cache[Key, []store.Scored] {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(k.Batch)
	h.WriteByte(byte(k.Kind))
	h.WriteString(k.Key)
	return c.shards[h.Sum64()%shards]
}

// Get returns the cached list; it is shared, so callers copy what they hand out.
func (c *Cache) Get(k Key) ([]store.Scored, bool) { return c.shard(k).Get(k) }

// Put caches l under k; l must not be modified afterwards.
func (c *Cache) Put(k Key, l []store.Scored) { c.shard(k).Add(k, l) }

// Len is the number of lists cached now.
func (c *Cache) Len() int {
	n := 0
	for _, s := range c.shards {
		n += s.Len()
	}
	return n
}

// Purge empties the cache.
func (c *Cache) Purge() {
	for _, s := range c.shards {
		s.Purge()
	}
}
