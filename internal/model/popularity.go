package model

import (
	"slices"
	"strconv"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// Popularity holds Pop[item], the summed weight of an item's events. The zero
// value is not usable: use NewPopularity or a Model's.
type Popularity struct {
	items  *dict
	counts []int64 // by item id
	n      int     // non-zero entries
}

// NewPopularity returns empty popularity counts.
func NewPopularity() *Popularity { return &Popularity{items: newDict()} }

func newPopularity(items *dict) *Popularity { return &Popularity{items: items} }

// Add adds w to Pop[item].
func (p *Popularity) Add(item string, w int64) {
	if w == 0 {
		return
	}
	p.addID(p.items.intern(item), w)
}

// AddItemID is Add for an item named by its id in the dictionary p shares
// with its model (Model.Covisit().Intern of the same model).
func (p *Popularity) AddItemID(item uint32, w int64) {
	if w == 0 {
		return
	}
	p.addID(item, w)
}

func (p *Popularity) addID(id uint32, w int64) {
	if int(id) >= len(p.counts) {
		p.counts = append(p.counts, make([]int64, max(int(id)+1, p.items.len())-len(p.counts))...)
	}
	old := p.counts[id]
	p.counts[id] += w
	switch {
	case old == 0 && p.counts[id] != 0:
		p.n++
	case old != 0 && p.counts[id] == 0:
		p.n--
	}
}

// Get returns Pop[item].
func (p *Popularity) Get(item string) int64 {
	id, ok := p.items.lookup(item)
	if !ok || int(id) >= len(p.counts) {
		return 0
	}
	return p.counts[id]
}

// Len returns the number of items with a non-zero count.
func (p *Popularity) Len() int { return p.n }

// All returns every item with a non-zero count, in the model's order (count
// desc, item asc).
func (p *Popularity) All() []ItemCount {
	out := make([]ItemCount, 0, p.n)
	for id, n := range p.counts {
		if n != 0 {
			out = append(out, ItemCount{Item: p.items.str(uint32(id)), Count: n})
		}
	}
	SortItemCounts(out)
	return out
}

// Top returns the k most popular items in the model's order.
func (p *Popularity) Top(k int) []ItemCount {
	all := p.All()
	if k >= 0 && len(all) > k {
		all = slices.Clip(all[:k])
	}
	return all
}

// Merge adds o's counts into p.
func (p *Popularity) Merge(o *Popularity) { p.merge(o, 1) }

// Sub subtracts o's counts from p.
func (p *Popularity) Sub(o *Popularity) { p.merge(o, -1) }

func (p *Popularity) merge(o *Popularity, sign int64) {
	for id, n := range o.counts {
		if n == 0 {
			continue
		}
		if o.items == p.items {
			p.addID(uint32(id), sign*n)
		} else {
			p.addID(p.items.intern(o.items.str(uint32(id))), sign*n)
		}
	}
}

// Equal reports whether p and o hold the same counts.
func (p *Popularity) Equal(o *Popularity) bool { return p.diff(o) == "" }

func (p *Popularity) diff(o *Popularity) string {
	if p.n != o.n {
		return "popularity: " + itoa(int64(p.n)) + " items vs " + itoa(int64(o.n))
	}
	for id, n := range p.counts {
		if n == 0 {
			continue
		}
		item := p.items.str(uint32(id))
		if m := o.Get(item); m != n {
			return "popularity[" + item + "]: " + itoa(n) + " vs " + itoa(m)
		}
	}
	return ""
}
