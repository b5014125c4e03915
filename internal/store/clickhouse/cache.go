package clickhouse

import (
	"hash/maphash"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/lambdarec/lambdarec/internal/store"
)

// listKind says which list of a batch view a row holds.
type listKind uint8

const (
	kindNeighbors listKind = 1
	kindUserRecs  listKind = 2
	kindPopular   listKind = 3
)

// cacheKey names one list of one batch. Entries of batches that are no longer
// current are never read again and age out of the LRU.
type cacheKey struct {
	batch string
	kind  listKind
	key   string
}

// listCache is a least-recently-used cache of batch-view lists, sharded so
// that parallel readers do not queue on one lock. A nil list is cached too:
// unknown keys stay off ClickHouse as well.
type listCache struct {
	seed   maphash.Seed
	shards [cacheShards]*lru.Cache[cacheKey, []store.Scored]
}

const cacheShards = 16

func newListCache(entries int) *listCache {
	c := &listCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i], _ = lru.New[cacheKey, []store.Scored](max(1, entries/cacheShards)) // errors only on size <= 0
	}
	return c
}

func (c *listCache) shard(k cacheKey) *lru.Cache[cacheKey, []store.Scored] {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(k.batch)
	h.WriteByte(byte(k.kind))
	h.WriteString(k.key)
	return c.shards[h.Sum64()%cacheShards]
}

// get returns the cached list; it is shared, so callers copy what they hand out.
func (c *listCache) get(k cacheKey) ([]store.Scored, bool) { return c.shard(k).Get(k) }

func (c *listCache) put(k cacheKey, l []store.Scored) { c.shard(k).Add(k, l) }

func (c *listCache) len() int {
	n := 0
	for _, s := range c.shards {
		n += s.Len()
	}
	return n
}

func (c *listCache) purge() {
	for _, s := range c.shards {
		s.Purge()
	}
}
