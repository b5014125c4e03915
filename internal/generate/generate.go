// Package generate owns lambdarec's synthetic clickstream: a deterministic
// (given a seed and a start time) stream of schemas.UserInteraction records
// with an item catalog in categories, Zipf popularity, returning users, and
// sessions that walk a planted item-to-item structure through the funnel
// view → click → cart → purchase. It can inject duplicates, late and
// malformed records, export the planted structure (Planted) so that model
// quality can be compared with the best achievable (Oracle), and produce to
// Kafka with franz-go or to a JSON-lines file (Run).
package generate

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lambdarec/lambdarec/schemas"
)

// Config configures a Generator. Zero values take the documented defaults.
type Config struct {
	// Seed makes the stream reproducible: the same Seed, Start and catalog
	// options give byte-identical records (within one build of lambdarec).
	Seed int64
	// Start is the event time the simulated clock starts at, truncated to the
	// millisecond. Default: the time New is called, which makes timestamps and
	// ids differ between runs; set it when output must be reproducible.
	Start time.Time
	// ClockRate is how many events happen per second of simulated event time
	// (roughly; the sessions are random). It sets how many sessions run at
	// once; when there are not enough users for that, session gaps shrink.
	// Set it to Rate to make event time keep pace with the wall clock.
	// Default: 100.
	ClockRate float64

	// NumItems is the catalog size. Default: 5000.
	NumItems int
	// NumCategories is the number of item categories. Default: 50.
	NumCategories int
	// NumUsers is the number of users; active users come back in several
	// sessions. Default: 20000.
	NumUsers int
	// Successors is the number of planted successors per item. Default: 4.
	Successors int
	// ZipfS is the exponent of item popularity. Default: 1.0.
	ZipfS float64
	// JumpRate is the probability that a session moves to a popularity-drawn
	// item instead of a planted successor. Default: 0.15.
	JumpRate float64

	// DupRate is the fraction of records that re-emit a recent record byte
	// for byte, with the same key. Default: 0.
	DupRate float64
	// LateRate is the fraction of events whose event time is pushed into
	// the past by one minute to three hours. Default: 0.
	LateRate float64
	// MalformedRate is the fraction of records whose value is undecodable
	// bytes (still keyed by a session id). Default: 0.
	MalformedRate float64

	// Rate bounds Run to this many records per second; 0 runs as fast as the
	// sink takes them. Default: 0.
	Rate float64
	// Count stops Run after this many records (duplicates and malformed
	// included); 0 means no limit. Default: 0.
	Count int64
	// Duration stops Run after this long; 0 means no limit. Default: 0.
	Duration time.Duration
	// ProgressInterval is how often Run logs its progress. Default: 5s.
	ProgressInterval time.Duration
	// FlushTimeout bounds the final flush of Run after its context ended.
	// Default: 10s.
	FlushTimeout time.Duration
	// Log receives Run's progress. Default: discard.
	Log *slog.Logger
}

func (c *Config) validate() error {
	if c.Start.IsZero() {
		c.Start = time.Now()
	}
	c.Start = c.Start.Truncate(time.Millisecond).UTC()
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	deff := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.NumItems, 5000)
	def(&c.NumCategories, 50)
	def(&c.NumUsers, 20000)
	def(&c.Successors, 4)
	deff(&c.ZipfS, 1.0)
	deff(&c.JumpRate, 0.15)
	deff(&c.ClockRate, 100)
	if c.ProgressInterval == 0 {
		c.ProgressInterval = 5 * time.Second
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = 10 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Start.Before(schemas.MinTimestamp.Add(24 * time.Hour)) {
		bad("start %s is too early: events must be after %s", c.Start.Format(time.RFC3339), schemas.MinTimestamp.Format(time.RFC3339))
	}
	if c.NumCategories < 1 || c.NumItems < c.NumCategories || c.NumItems < 2 {
		bad("need at least 2 items and at least one item per category, got %d items in %d categories", c.NumItems, c.NumCategories)
	}
	if c.NumUsers < 1 {
		bad("users must be positive, got %d", c.NumUsers)
	}
	if c.Successors < 1 || c.Successors >= c.NumItems {
		bad("successors must be between 1 and items-1, got %d", c.Successors)
	}
	if c.ZipfS < 0 || math.IsNaN(c.ZipfS) || c.ZipfS > 5 {
		bad("zipf exponent must be between 0 and 5, got %g", c.ZipfS)
	}
	if !(c.ClockRate > 0) || math.IsInf(c.ClockRate, 0) {
		bad("clock rate must be positive, got %g", c.ClockRate)
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"jump rate", c.JumpRate}, {"dup rate", c.DupRate}, {"late rate", c.LateRate}, {"malformed rate", c.MalformedRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			bad("%s must be between 0 and 1, got %g", r.name, r.v)
		}
	}
	if c.DupRate+c.MalformedRate > 0.9 {
		bad("dup rate + malformed rate must be at most 0.9, got %g", c.DupRate+c.MalformedRate)
	}
	if !(c.Rate >= 0) || math.IsInf(c.Rate, 0) {
		bad("rate must be zero or positive, got %g", c.Rate)
	}
	if c.Count < 0 || c.Duration < 0 || c.ProgressInterval < 0 || c.FlushTimeout < 0 {
		bad("count, duration, progress interval and flush timeout must not be negative")
	}
	return errors.Join(errs...)
}

// Record is one generated Kafka record.
type Record struct {
	// Key is the session id. Keys of one session share their backing array.
	Key []byte
	// Value is the protobuf encoding of Event, or garbage when Malformed.
	Value []byte
	// Event is the decoded event, nil when Malformed. A duplicate carries
	// the same pointer as the original. Events share their device, location
	// and metadata with other events: treat them as read-only.
	Event *schemas.UserInteraction
	// Dup marks a re-emitted record, Late an event whose time was pushed
	// into the past, Malformed an undecodable value.
	Dup, Late, Malformed bool
}

// Counts are the records a generator has produced, by kind.
type Counts struct {
	Records   int64 `json:"records"` // everything, duplicates and malformed included
	Dups      int64 `json:"dups"`
	Late      int64 `json:"late"`
	Malformed int64 `json:"malformed"`
	Sessions  int64 `json:"sessions"` // sessions started
}

// Generator produces the clickstream. It is not safe for concurrent use.
type Generator struct {
	cfg       Config
	cat       *catalog
	rng       *rand.Rand // the clean stream
	faults    *rand.Rand // duplicates, late and malformed: the clean stream does not depend on their rates
	users     []user
	active    []bool
	byAct     alias // users by activity
	meta      *schemas.Metadata
	devices   []map[string]string // profiles shared by the events of many users
	locations []map[string]string
	enc       encoding

	heap       []*session // by next event time: the sessions in progress
	gapScale   float64
	tag        string // run tag in ids: hash of seed and start
	eventSeq   uint64
	sessionSeq uint64
	orderSeq   uint64
	idBuf      []byte
	slab       []byte // values are carved from here to save allocations

	ring  []Record // recent records, for duplicates
	ringN int
	ringI int

	counts Counts
}

const ringSize = 4096

type user struct {
	id               string
	prefs            []int32
	device, location int32 // profile indexes
}

type stage uint8

const (
	stView stage = iota
	stClick
	stCart
	stPurchase
)

type cartLine struct {
	item int32
	qty  int32
}

type session struct {
	id    string
	key   []byte
	user  int32
	item  int32
	stage stage
	cart  []cartLine
	line  int
	order string
	at    int64 // unix ns of the session's next event
	seq   uint64
}

var (
	deviceProfiles = []map[string]string{
		{"type": "mobile", "os": "ios", "app": "shop-ios"},
		{"type": "mobile", "os": "android", "app": "shop-android"},
		{"type": "mobile", "os": "android", "browser": "chrome"},
		{"type": "desktop", "os": "windows", "browser": "chrome"},
		{"type": "desktop", "os": "windows", "browser": "edge"},
		{"type": "desktop", "os": "macos", "browser": "safari"},
		{"type": "desktop", "os": "linux", "browser": "firefox"},
		{"type": "tablet", "os": "ipados", "browser": "safari"},
	}
	deviceWeights    = []float64{22, 20, 10, 18, 6, 12, 3, 9}
	locationProfiles = []map[string]string{
		{"country": "DE", "city": "Berlin"}, {"country": "DE", "city": "Munich"},
		{"country": "US", "city": "New York"}, {"country": "US", "city": "Austin"},
		{"country": "GB", "city": "London"}, {"country": "FR", "city": "Paris"},
		{"country": "NL", "city": "Amsterdam"}, {"country": "PL", "city": "Warsaw"},
		{"country": "ES", "city": "Madrid"}, {"country": "IT", "city": "Milan"},
		{"country": "SE", "city": "Stockholm"}, {"country": "AT", "city": "Vienna"},
	}
	locationWeights = []float64{14, 8, 16, 6, 12, 10, 6, 6, 7, 6, 4, 5}
)

// New builds the catalog, the planted structure and the users of cfg.Seed.
func New(cfg Config) (*Generator, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("generator config: %w", err)
	}
	seed := uint64(cfg.Seed)
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	g := &Generator{
		cfg:    cfg,
		rng:    r,
		faults: rand.New(rand.NewPCG(seed, 0xd1b54a32d192ed03)),
		meta:   &schemas.Metadata{Source: "generator", SchemaVersion: schemas.SchemaVersion, IsTest: true},
		ring:   make([]Record, ringSize),
	}
	h := fnv.New64a()
	h.Write(strconv.AppendInt(strconv.AppendInt(nil, cfg.Seed, 10), cfg.Start.UnixMilli(), 36))
	g.tag = strconv.FormatUint(h.Sum64()&0xffffffff, 36)
	g.cat = newCatalog(&g.cfg, r)

	devices, locations := newAlias(deviceWeights), newAlias(locationWeights)
	g.users = make([]user, cfg.NumUsers)
	g.active = make([]bool, cfg.NumUsers)
	act := make([]float64, cfg.NumUsers)
	for rank, u := range r.Perm(cfg.NumUsers) {
		act[u] = 1 / math.Pow(float64(rank+1), 0.8) // a few heavy users, a long tail
	}
	for u := range g.users {
		prefs := make([]int32, 1+r.IntN(3))
		for k := range prefs {
			prefs[k] = int32(g.cat.catByPop.sample(r))
		}
		g.users[u] = user{
			id:       fmt.Sprintf("u%06d", u),
			prefs:    prefs,
			device:   int32(devices.sample(r)),
			location: int32(locations.sample(r)),
		}
	}
	g.encodePieces()
	g.byAct = newAlias(act)

	// Enough sessions in progress to reach ClockRate events per second of
	// event time; when the users are too few, the gaps shrink instead.
	perEvent, perSession := slotTime()
	conc := cfg.ClockRate * perEvent
	g.gapScale = 1
	if maxConc := max(1, float64(cfg.NumUsers)/2); conc > maxConc {
		g.gapScale = maxConc / conc
		conc = maxConc
	}
	start := cfg.Start.UnixNano()
	n := max(1, int(math.Round(conc)))
	g.heap = make([]*session, 0, n)
	for range n {
		s := &session{}
		// Spread the first sessions over one session's length, so the
		// stream starts in its steady state.
		g.startSession(s, start+int64(r.Float64()*perSession*g.gapScale*1e9)/1e6*1e6)
		g.heap = append(g.heap, s)
		g.siftUp(len(g.heap) - 1)
	}
	return g, nil
}

// encodePieces encodes once what many events share.
func (g *Generator) encodePieces() {
	for _, m := range deviceProfiles {
		g.devices = append(g.devices, maps.Clone(m))
		g.enc.device = append(g.enc.device, encodeMap(fDevice, m))
	}
	for _, m := range locationProfiles {
		g.locations = append(g.locations, maps.Clone(m))
		g.enc.location = append(g.enc.location, encodeMap(fLocation, m))
	}
	g.enc.metadata = encodeMetadata(g.meta)
	g.enc.user = make([][]byte, len(g.users))
	for i, u := range g.users {
		b := protowire.AppendTag(nil, fUserID, protowire.BytesType)
		g.enc.user[i] = protowire.AppendString(b, u.id)
	}
	g.enc.item = make([][]byte, len(g.cat.itemID))
	for i, id := range g.cat.itemID {
		g.enc.item[i] = encodeItem(id, g.cat.catName[g.cat.itemCat[i]])
	}
}

// slotTime returns the expected time one session slot spends per event and
// per session (idle gap included), in seconds, from the session behaviour.
func slotTime() (perEvent, perSession float64) {
	items := 1 / stopRate
	ca := clickRate * cartRate
	x := 1 - ca
	pCart := 1 - stopRate*x/(1-(1-stopRate)*x) // P(cart not empty at the end)
	lines := checkoutRate * items * ca
	events := items*(1+clickRate+ca) + lines
	perSession = items*(clickRate*gapClick+ca*gapCart) + (items-1)*gapItem +
		checkoutRate*pCart*gapCheckout + lines*gapLine + gapIdle
	return perSession / events, perSession
}

// Config returns the configuration with its defaults filled in.
func (g *Generator) Config() Config { return g.cfg }

// Counts returns what Next has produced so far.
func (g *Generator) Counts() Counts { return g.counts }

// Next returns the next record of the stream.
func (g *Generator) Next() Record {
	g.counts.Records++
	if g.cfg.DupRate > 0 || g.cfg.MalformedRate > 0 {
		x := g.faults.Float64()
		switch {
		case x < g.cfg.DupRate && g.ringN > 0:
			g.counts.Dups++
			rec := g.ring[(g.ringI-1-g.faults.IntN(min(g.ringN, 64))+ringSize)%ringSize]
			rec.Dup = true
			return rec
		case x >= g.cfg.DupRate && x < g.cfg.DupRate+g.cfg.MalformedRate:
			g.counts.Malformed++
			return g.malformed()
		}
	}
	rec := g.event()
	g.ring[g.ringI] = rec
	g.ringI = (g.ringI + 1) % ringSize
	g.ringN = min(g.ringN+1, ringSize)
	return rec
}

// malformed returns a record whose value cannot be decoded as protobuf: a
// recent value cut short and ended by an unterminated varint (every top-level
// field of UserInteraction is length-delimited, so no cut decodes), or
// garbage starting with the invalid field number 0.
func (g *Generator) malformed() Record {
	key := g.heap[0].key
	if g.ringN > 0 && g.faults.IntN(2) == 0 {
		src := g.ring[(g.ringI-1-g.faults.IntN(g.ringN)+ringSize)%ringSize]
		cut := g.faults.IntN(len(src.Value))
		v := make([]byte, cut+1)
		copy(v, src.Value[:cut])
		v[cut] = 0xff
		return Record{Key: src.Key, Value: v, Malformed: true}
	}
	v := make([]byte, 1+8+g.faults.IntN(56))
	for i := 1; i < len(v); i++ {
		v[i] = byte(g.faults.Uint32())
	}
	return Record{Key: key, Value: v, Malformed: true}
}

// One allocation per event: the message, its timestamp and its interaction.
type (
	pageViewEvent struct {
		ev schemas.UserInteraction
		ts timestamppb.Timestamp
		w  schemas.UserInteraction_PageView
		m  schemas.PageView
	}
	clickEvent struct {
		ev schemas.UserInteraction
		ts timestamppb.Timestamp
		w  schemas.UserInteraction_ProductClick
		m  schemas.ProductClick
	}
	cartEvent struct {
		ev schemas.UserInteraction
		ts timestamppb.Timestamp
		w  schemas.UserInteraction_AddToCart
		m  schemas.AddToCart
	}
	purchaseEvent struct {
		ev schemas.UserInteraction
		ts timestamppb.Timestamp
		w  schemas.UserInteraction_Purchase
		m  schemas.Purchase
	}
)

// event emits the next event of the session due first and schedules the
// session's next event.
func (g *Generator) event() Record {
	s := g.heap[0]
	r := g.rng
	// s is reused for the next session when this one ends: keep what the
	// event needs first.
	at, key, sid, uid, item := s.at, s.key, s.id, s.user, s.item
	var (
		ev    *schemas.UserInteraction
		ts    *timestamppb.Timestamp
		kind  protowire.Number
		qty   int32
		order string
	)
	switch s.stage {
	case stView:
		b := new(pageViewEvent)
		b.m.ItemId, b.m.Category = g.cat.itemID[item], g.cat.catName[g.cat.itemCat[item]]
		b.w.PageView, b.ev.Interaction = &b.m, &b.w
		ev, ts, kind = &b.ev, &b.ts, fPageView
		if r.Float64() < clickRate {
			s.stage = stClick
			s.at += g.gap(gapClick)
		} else {
			g.afterItem(s)
		}
	case stClick:
		b := new(clickEvent)
		b.m.ItemId, b.m.Category = g.cat.itemID[item], g.cat.catName[g.cat.itemCat[item]]
		b.w.ProductClick, b.ev.Interaction = &b.m, &b.w
		ev, ts, kind = &b.ev, &b.ts, fClick
		if r.Float64() < cartRate {
			s.stage = stCart
			s.at += g.gap(gapCart)
		} else {
			g.afterItem(s)
		}
	case stCart:
		qty = 1
		if x := r.Float64(); x < 0.05 {
			qty = 3
		} else if x < 0.2 {
			qty = 2
		}
		b := new(cartEvent)
		b.m.ItemId, b.m.Category = g.cat.itemID[item], g.cat.catName[g.cat.itemCat[item]]
		b.m.Price, b.m.Quantity = g.cat.price[item], qty
		b.w.AddToCart, b.ev.Interaction = &b.m, &b.w
		ev, ts, kind = &b.ev, &b.ts, fCart
		s.cart = append(s.cart, cartLine{item: item, qty: qty})
		g.afterItem(s)
	case stPurchase:
		l := s.cart[s.line]
		item, qty, order = l.item, l.qty, s.order
		b := new(purchaseEvent)
		b.m.ItemId, b.m.Category = g.cat.itemID[item], g.cat.catName[g.cat.itemCat[item]]
		b.m.Price, b.m.Quantity, b.m.OrderId = g.cat.price[item], qty, order
		b.w.Purchase, b.ev.Interaction = &b.m, &b.w
		ev, ts, kind = &b.ev, &b.ts, fPurchase
		if s.line++; s.line < len(s.cart) {
			s.at += g.gap(gapLine)
		} else {
			g.endSession(s)
		}
	}
	g.siftDown(0)

	u := &g.users[uid]
	ev.EventId = g.nextID('e', &g.eventSeq)
	ev.UserId, ev.SessionId = u.id, sid
	ev.Device, ev.Location, ev.Metadata = g.devices[u.device], g.locations[u.location], g.meta
	late := false
	if g.cfg.LateRate > 0 && g.faults.Float64() < g.cfg.LateRate {
		// Log-uniform between one minute and three hours, in milliseconds.
		at -= int64(math.Exp(math.Log(60e3)+g.faults.Float64()*math.Log(180))) * 1e6
		late = true
		g.counts.Late++
	}
	ts.Seconds, ts.Nanos = at/1e9, int32(at%1e9)
	ev.Timestamp = ts

	if cap(g.slab)-len(g.slab) < 1024 {
		g.slab = make([]byte, 0, 256<<10)
	}
	n := len(g.slab)
	out := g.enc.appendEvent(g.slab[n:n:n+1024], ev.EventId, at, int(uid), sid, kind, int(item),
		g.cat.price[item], qty, order, int(u.device), int(u.location))
	if len(out) <= 1024 {
		g.slab = g.slab[:n+len(out)]
	}
	return Record{Key: key, Value: out[:len(out):len(out)], Event: ev, Late: late}
}

// afterItem moves s past its current item: to the next item, a checkout or
// the end of the session.
func (g *Generator) afterItem(s *session) {
	r := g.rng
	if r.Float64() >= stopRate {
		s.item = g.cat.next(s.item, g.cfg.JumpRate, r)
		s.stage = stView
		s.at += g.gap(gapItem)
		return
	}
	if len(s.cart) > 0 && r.Float64() < checkoutRate {
		s.stage = stPurchase
		s.line = 0
		s.order = g.nextID('o', &g.orderSeq)
		s.at += g.gap(gapCheckout)
		return
	}
	g.endSession(s)
}

// endSession replaces s, in its slot, by a new session of a new user.
func (g *Generator) endSession(s *session) {
	g.active[s.user] = false
	idle := int64(g.rng.ExpFloat64()*gapIdle*g.gapScale*1e3+1) * 1e6
	g.startSession(s, s.at+idle)
}

func (g *Generator) startSession(s *session, at int64) {
	r := g.rng
	u := int32(g.byAct.sample(r))
	for range 8 { // a user is usually in one session at a time
		if !g.active[u] {
			break
		}
		u = int32(g.byAct.sample(r))
	}
	g.active[u] = true
	var item int32
	if prefs := g.users[u].prefs; r.Float64() < preferredStart {
		c := prefs[r.IntN(len(prefs))]
		item = g.cat.catItems[c][g.cat.catDraw[c].sample(r)]
	} else {
		item = int32(g.cat.popDraw.sample(r))
	}
	id := g.nextID('s', &g.sessionSeq)
	*s = session{id: id, key: []byte(id), user: u, item: item, stage: stView, cart: s.cart[:0], at: at, seq: g.sessionSeq}
	g.counts.Sessions++
}

// gap returns a log-normal gap with the given mean in seconds, scaled, in
// whole milliseconds, as nanoseconds.
func (g *Generator) gap(mean float64) int64 {
	f := math.Exp(gapSigma*g.rng.NormFloat64() - gapSigma*gapSigma/2)
	return int64(mean*f*g.gapScale*1e3+1) * 1e6
}

// nextID returns "<prefix><tag>-<n>" for the next n of seq.
func (g *Generator) nextID(prefix byte, seq *uint64) string {
	*seq++
	b := append(g.idBuf[:0], prefix)
	b = append(b, g.tag...)
	b = append(b, '-')
	b = strconv.AppendUint(b, *seq, 10)
	g.idBuf = b
	return string(b)
}

func (g *Generator) less(i, j int) bool {
	a, b := g.heap[i], g.heap[j]
	return a.at < b.at || (a.at == b.at && a.seq < b.seq)
}

func (g *Generator) siftUp(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !g.less(i, p) {
			return
		}
		g.heap[i], g.heap[p] = g.heap[p], g.heap[i]
		i = p
	}
}

func (g *Generator) siftDown(i int) {
	n := len(g.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && g.less(r, l) {
			m = r
		}
		if !g.less(m, i) {
			return
		}
		g.heap[i], g.heap[m] = g.heap[m], g.heap[i]
		i = m
	}
}
