package generate

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Session behaviour. They are constants rather than options because the
// evaluation only needs them to be known, and Planted exports them.
const (
	stopRate       = 0.18 // after each item, the session ends (mean 1/0.18 ≈ 5.6 items)
	clickRate      = 0.45 // a viewed item is clicked
	cartRate       = 0.25 // a clicked item is added to the cart
	checkoutRate   = 0.6  // a session with a non-empty cart ends in a checkout
	preferredStart = 0.7  // a session starts in one of the user's preferred categories
	crossCategory  = 0.2  // a successor slot is filled from the related category

	// Mean gaps between a session's events, in seconds (log-normal, except idle).
	gapItem     = 20.0 // from the last event on an item to the view of the next item
	gapClick    = 4.0  // view → click
	gapCart     = 8.0  // click → add to cart
	gapCheckout = 30.0 // last event → first purchase line
	gapLine     = 0.1  // between purchase lines of one order
	gapIdle     = 30.0 // from the end of a session to the start of the next one in its slot (exponential)
	gapSigma    = 0.7  // log-normal shape of the gaps
)

// catalog is the item catalog and the planted item-to-item structure.
type catalog struct {
	itemID  []string
	itemCat []int32
	price   []float64
	pop     []float64 // probability of the item in a popularity draw
	popDraw alias

	catName  []string
	catItems [][]int32
	catPop   []float64 // summed popularity of the category's items
	catDraw  []alias   // items of a category by popularity
	catByPop alias     // categories by popularity
	related  []int32   // the related category of each category

	succ    [][]int32   // successors of each item, most likely first
	succP   [][]float64 // their probabilities
	succCum [][]float64 // cumulative probabilities, for sampling
}

func newCatalog(cfg *Config, r *rand.Rand) *catalog {
	n, nc := cfg.NumItems, cfg.NumCategories
	c := &catalog{
		itemID:   make([]string, n),
		itemCat:  make([]int32, n),
		price:    make([]float64, n),
		pop:      make([]float64, n),
		catName:  make([]string, nc),
		catItems: make([][]int32, nc),
		catPop:   make([]float64, nc),
		catDraw:  make([]alias, nc),
		related:  make([]int32, nc),
		succ:     make([][]int32, n),
		succP:    make([][]float64, n),
		succCum:  make([][]float64, n),
	}
	// Categories have Zipf-like sizes; every category gets at least one item.
	catW := make([]float64, nc)
	for i := range nc {
		c.catName[i] = fmt.Sprintf("cat-%03d", i)
		catW[i] = 1 / math.Pow(float64(i+1), 0.8)
	}
	catSize := newAlias(catW)
	for i := range n {
		c.itemID[i] = fmt.Sprintf("i%05d", i)
		cat := int32(i)
		if i >= nc {
			cat = int32(catSize.sample(r))
		}
		c.itemCat[i] = cat
		c.catItems[cat] = append(c.catItems[cat], int32(i))
		// Log-normal prices around 25, in cents.
		p := math.Exp(math.Log(25) + 0.9*r.NormFloat64())
		c.price[i] = math.Round(min(max(p, 0.99), 5000)*100) / 100
	}
	// Zipf popularity over a random order of the items.
	var sum float64
	for rank, i := range r.Perm(n) {
		c.pop[i] = 1 / math.Pow(float64(rank+1), cfg.ZipfS)
		sum += c.pop[i]
	}
	for i := range c.pop {
		c.pop[i] /= sum
		c.catPop[c.itemCat[i]] += c.pop[i]
	}
	c.popDraw = newAlias(c.pop)
	c.catByPop = newAlias(c.catPop)
	succDraw := make([]alias, nc) // successors are drawn by sqrt(popularity): related, not just the best sellers
	for cat, items := range c.catItems {
		w := make([]float64, len(items))
		ws := make([]float64, len(items))
		for k, i := range items {
			w[k] = c.pop[i]
			ws[k] = math.Sqrt(c.pop[i])
		}
		c.catDraw[cat] = newAlias(w)
		succDraw[cat] = newAlias(ws)
		c.related[cat] = int32(cat)
		if nc > 1 {
			c.related[cat] = int32((cat + 1 + r.IntN(nc-1)) % nc)
		}
	}
	for i := range n {
		c.plantSuccessors(int32(i), cfg.Successors, succDraw, r)
	}
	return c
}

// plantSuccessors draws k distinct successors of item i, mostly from its
// category, some from the related category, with random decreasing
// probabilities.
func (c *catalog) plantSuccessors(i int32, k int, succDraw []alias, r *rand.Rand) {
	cat := c.itemCat[i]
	succ := make([]int32, 0, k)
	has := func(j int32) bool { return j == i || slices.Contains(succ, j) }
	for tries := 0; len(succ) < k && tries < 30*k; tries++ {
		from := cat
		if r.Float64() < crossCategory {
			from = c.related[cat]
		}
		j := c.catItems[from][succDraw[from].sample(r)]
		if !has(j) {
			succ = append(succ, j)
		}
	}
	for len(succ) < k { // tiny categories: fill from the whole catalog
		if j := int32(c.popDraw.sample(r)); !has(j) {
			succ = append(succ, j)
		}
	}
	p := make([]float64, k)
	var sum float64
	for x := range p {
		p[x] = 0.15 + r.ExpFloat64()
		sum += p[x]
	}
	for x := range p {
		p[x] /= sum
	}
	slices.SortFunc(p, func(a, b float64) int { return cmp.Compare(b, a) })
	cum := make([]float64, k)
	var acc float64
	for x := range p {
		acc += p[x]
		cum[x] = acc
	}
	cum[k-1] = 1
	c.succ[i], c.succP[i], c.succCum[i] = succ, p, cum
}

// next draws the item that follows i in a session: a planted successor, or
// with probability jump a popularity draw other than i.
func (c *catalog) next(i int32, jump float64, r *rand.Rand) int32 {
	if r.Float64() < jump {
		for range 64 {
			if j := int32(c.popDraw.sample(r)); j != i {
				return j
			}
		}
	}
	x := r.Float64()
	for k, cum := range c.succCum[i] {
		if x < cum {
			return c.succ[i][k]
		}
	}
	return c.succ[i][len(c.succ[i])-1]
}

// Planted is the structure a generator planted in its clickstream, exported so
// that model quality can be measured against the best achievable: within a
// session, the item after item i is, with probability 1-Model.JumpRate, one of
// i's Successors (drawn by P), and otherwise an item drawn by Popularity
// (redrawn while it equals i). Oracle turns this into the best possible
// next-item prediction.
type Planted struct {
	Seed       int64             `json:"seed"`
	Start      time.Time         `json:"start"`
	Model      Model             `json:"model"`
	Categories []PlantedCategory `json:"categories"`
	Items      []PlantedItem     `json:"items"`
}

// Model holds the behaviour parameters of the generated sessions.
type Model struct {
	// JumpRate is the probability that the next item is a popularity draw
	// rather than a successor.
	JumpRate float64 `json:"jump_rate"`
	// StopRate is the probability that a session ends after an item.
	StopRate float64 `json:"stop_rate"`
	// ClickRate, CartRate and CheckoutRate drive the funnel: a viewed item is
	// clicked, a clicked item is added to the cart, a session with a cart
	// checks out (one purchase event per cart line, sharing an order id).
	ClickRate    float64 `json:"click_rate"`
	CartRate     float64 `json:"cart_rate"`
	CheckoutRate float64 `json:"checkout_rate"`
	// PreferredStart is the probability that a session starts in one of the
	// user's preferred categories (else anywhere, by popularity).
	PreferredStart float64 `json:"preferred_start"`
	// ZipfS is the exponent of item popularity.
	ZipfS float64 `json:"zipf_s"`
	// Successors is the number of successors per item.
	Successors int `json:"successors"`
}

// PlantedCategory is one category of the catalog.
type PlantedCategory struct {
	Name string `json:"name"`
	// Related is the category that some successors are drawn from.
	Related    string  `json:"related"`
	Popularity float64 `json:"popularity"`
	Items      int     `json:"items"`
}

// PlantedItem is one item of the catalog and its planted successors.
type PlantedItem struct {
	ItemID     string      `json:"item_id"`
	Category   string      `json:"category"`
	Price      float64     `json:"price"`
	Popularity float64     `json:"popularity"`
	Successors []Successor `json:"successors"`
}

// Successor is a planted transition: P is the probability of the successor
// given that the session follows the structure (does not jump).
type Successor struct {
	ItemID string  `json:"item_id"`
	P      float64 `json:"p"`
}

// Planted returns the structure planted in g's clickstream.
func (g *Generator) Planted() Planted {
	c := g.cat
	p := Planted{
		Seed:  g.cfg.Seed,
		Start: g.cfg.Start,
		Model: Model{
			JumpRate: g.cfg.JumpRate, StopRate: stopRate,
			ClickRate: clickRate, CartRate: cartRate, CheckoutRate: checkoutRate,
			PreferredStart: preferredStart, ZipfS: g.cfg.ZipfS, Successors: g.cfg.Successors,
		},
		Categories: make([]PlantedCategory, len(c.catName)),
		Items:      make([]PlantedItem, len(c.itemID)),
	}
	for i, name := range c.catName {
		p.Categories[i] = PlantedCategory{Name: name, Related: c.catName[c.related[i]], Popularity: c.catPop[i], Items: len(c.catItems[i])}
	}
	for i, id := range c.itemID {
		it := PlantedItem{ItemID: id, Category: c.catName[c.itemCat[i]], Price: c.price[i], Popularity: c.pop[i], Successors: make([]Successor, len(c.succ[i]))}
		for k, j := range c.succ[i] {
			it.Successors[k] = Successor{ItemID: c.itemID[j], P: c.succP[i][k]}
		}
		p.Items[i] = it
	}
	return p
}

// WritePlanted writes p as indented JSON.
func WritePlanted(w io.Writer, p Planted) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	if err := enc.Encode(p); err != nil {
		return fmt.Errorf("write planted structure: %w", err)
	}
	return nil
}

// ReadPlanted reads what WritePlanted wrote.
func ReadPlanted(r io.Reader) (Planted, error) {
	var p Planted
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Planted{}, fmt.Errorf("read planted structure: %w", err)
	}
	return p, nil
}

// Oracle predicts the next item of a session from its current item with the
// true transition probabilities: no model trained on the clickstream can do
// better on average, so its Recall@K is the ceiling to compare models with.
type Oracle struct {
	k     int
	jump  float64
	index map[string]int
	items []PlantedItem
	top   []int // the most popular items, enough to fill k
}

// Oracle returns the best next-item predictor for lists of k items.
func (p *Planted) Oracle(k int) *Oracle {
	k = max(k, 0)
	o := &Oracle{k: k, jump: p.Model.JumpRate, index: make(map[string]int, len(p.Items)), items: p.Items}
	order := make([]int, len(p.Items))
	for i, it := range p.Items {
		o.index[it.ItemID] = i
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := cmp.Compare(p.Items[b].Popularity, p.Items[a].Popularity); c != 0 {
			return c
		}
		return cmp.Compare(p.Items[a].ItemID, p.Items[b].ItemID)
	})
	maxSucc := 0
	for _, it := range p.Items {
		maxSucc = max(maxSucc, len(it.Successors))
	}
	o.top = order[:min(len(order), k+maxSucc+1)]
	return o
}

// Prob returns the probability that the item after from is to.
func (o *Oracle) Prob(from, to string) float64 {
	i, ok := o.index[from]
	j, ok2 := o.index[to]
	if !ok || !ok2 || i == j {
		return 0
	}
	return o.prob(i, j)
}

func (o *Oracle) prob(i, j int) float64 {
	var ps float64
	for _, s := range o.items[i].Successors {
		if s.ItemID == o.items[j].ItemID {
			ps = s.P
		}
	}
	pi := o.items[i].Popularity
	return (1-o.jump)*ps + o.jump*o.items[j].Popularity/(1-pi)
}

// Predict returns the k most likely items after item, most likely first (ties
// by item id). It returns nil for an unknown item.
func (o *Oracle) Predict(item string) []string {
	i, ok := o.index[item]
	if !ok {
		return nil
	}
	type cand struct {
		id string
		p  float64
	}
	cands := make([]cand, 0, len(o.top)+len(o.items[i].Successors))
	seen := make(map[int]bool, cap(cands))
	add := func(j int) {
		if j != i && !seen[j] {
			seen[j] = true
			cands = append(cands, cand{o.items[j].ItemID, o.prob(i, j)})
		}
	}
	for _, s := range o.items[i].Successors {
		if j, ok := o.index[s.ItemID]; ok {
			add(j)
		}
	}
	for _, j := range o.top {
		add(j)
	}
	slices.SortFunc(cands, func(a, b cand) int {
		if c := cmp.Compare(b.p, a.p); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	out := make([]string, 0, o.k)
	for _, c := range cands[:min(len(cands), o.k)] {
		out = append(out, c.id)
	}
	return out
}
