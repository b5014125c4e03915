package model

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/schemas"
)

func TestTopKTies(t *testing.T) {
	c := NewCovisit()
	c.Add("x", "b", 3)
	c.Add("x", "a", 3)
	c.Add("x", "c", 5)
	c.Add("x", "d", 1)
	c.Add("x", "aa", 3)
	want := []ItemCount{{"c", 5}, {"a", 3}, {"aa", 3}, {"b", 3}}
	if got := c.TopK("x", 4); !reflect.DeepEqual(got, want) {
		t.Errorf("TopK = %v, want %v", got, want)
	}
	if got := c.Row("a"); !reflect.DeepEqual(got, []ItemCount{{"x", 3}}) {
		t.Errorf("Row(a) = %v (symmetry)", got)
	}
	c.Add("x", "c", -5)
	if c.Get("c", "x") != 0 || c.Degree("x") != 4 || c.Degree("c") != 0 || c.Len() != 4 {
		t.Errorf("after cancelling x-c: get %d, degree(x) %d, degree(c) %d, len %d", c.Get("c", "x"), c.Degree("x"), c.Degree("c"), c.Len())
	}

	p := NewPopularity()
	for _, it := range []string{"z", "y", "x"} {
		p.Add(it, 2)
	}
	p.Add("w", 1)
	if got := p.Top(3); !reflect.DeepEqual(got, []ItemCount{{"x", 2}, {"y", 2}, {"z", 2}}) {
		t.Errorf("Popularity.Top = %v", got)
	}
}

func TestScoreOrderAndExclusion(t *testing.T) {
	p := DefaultParams()
	p.Neighbors = 2
	c := NewCovisit()
	c.Add("a", "n1", 4)
	c.Add("a", "n2", 4)
	c.Add("a", "n3", 1) // cut by Neighbors = 2
	c.Add("b", "n1", 2)
	c.Add("b", "a", 1)
	c.Add("b", "n4", 2)
	sc, err := NewScorer(p)
	if err != nil {
		t.Fatal(err)
	}
	// recent: a (rank 0, weight 1), b (rank 1, weight 1/4).
	// a's top 2: n1 4, n2 4 (norm 4) -> n1 1, n2 1.
	// b's top 2: n1 2, n4 2 (norm 2) -> n1 +0.25, n4 0.25.
	got := sc.Score(c, []string{"a", "b", "a"}, nil, 10)
	want := []Scored{{Item: "n1", Score: 1.25}, {Item: "n2", Score: 1}, {Item: "n4", Score: 0.25}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Score = %v, want %v", got, want)
	}
	got = sc.Score(c, []string{"a", "b"}, func(it string) bool { return it == "n1" }, 1)
	if !reflect.DeepEqual(got, []Scored{{Item: "n2", Score: 1}}) {
		t.Errorf("Score excluding n1, k=1 = %v", got)
	}
	got = Fill(got, []ItemCount{{"a", 9}, {"n2", 8}, {"n1", 7}, {"z", 1}, {"y", 1}}, []string{"a"}, func(it string) bool { return it == "n1" }, 3)
	want = []Scored{{Item: "n2", Score: 1}, {Item: "z", Popular: true}, {Item: "y", Popular: true}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Fill = %v, want %v", got, want)
	}
	if got := sc.Score(c, nil, nil, 5); len(got) != 0 {
		t.Errorf("Score with no recent items = %v", got)
	}
}

func TestRecomputeIsOrderIndependent(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	st := genStream(r, 3, 40, 30, 2000)
	p := DefaultParams()
	ref, _ := Recompute(p, st.events)
	sc, _ := NewScorer(p)
	rows := func(m *Model) []string {
		var out []string
		for item, row := range m.Covisit().Rows(5) {
			out = append(out, fmt.Sprint(item, row))
		}
		return out
	}
	wantRows, wantPop := rows(ref), ref.Popularity().Top(20)
	wantRecs := sc.RecommendUser(ref, ref.Users(), "u03", 20)
	for i := range 5 {
		ev := slices.Clone(st.events)
		r.Shuffle(len(ev), func(i, j int) { ev[i], ev[j] = ev[j], ev[i] })
		m, _ := Recompute(p, ev)
		if d := m.Diff(ref); d != "" {
			t.Fatalf("shuffle %d: %s", i, d)
		}
		if !reflect.DeepEqual(rows(m), wantRows) || !reflect.DeepEqual(m.Popularity().Top(20), wantPop) {
			t.Fatalf("shuffle %d: published rows or popular items differ", i)
		}
		if got := sc.RecommendUser(m, m.Users(), "u03", 20); !reflect.DeepEqual(got, wantRecs) {
			t.Fatalf("shuffle %d: user recommendations %v, want %v", i, got, wantRecs)
		}
	}
	if len(wantRecs) == 0 || len(wantRows) == 0 {
		t.Fatal("test data too sparse")
	}
}

func TestSessionRecentAndBought(t *testing.T) {
	p := DefaultParams()
	s := NewSession("s")
	min := int64(time.Minute / time.Microsecond)
	add := func(id, item string, k schemas.Kind, tm, off int64) Outcome {
		return s.Add(&p, Event{EventID: id, SessionID: "s", UserID: "u", ItemID: item, Kind: k, Time: tm * min, Offset: off}, nil)
	}
	add("1", "a", schemas.KindPageView, 1, 10)
	add("2", "b", schemas.KindPurchase, 5, 11)
	add("3", "c", schemas.KindPageView, 3, 12) // late
	add("4", "a", schemas.KindPageView, 5, 13) // same time as b, later record
	if o := add("2", "z", schemas.KindPageView, 9, 14); o != Duplicate {
		t.Errorf("duplicate id: %v", o)
	}
	if o := add("5", "z", schemas.KindPageView, 9, 13); o != Stale {
		t.Errorf("replayed offset: %v", o)
	}
	if got := s.Recent(10); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("Recent = %v", got)
	}
	if got := s.Recent(2); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Errorf("Recent(2) = %v", got)
	}
	if !s.Bought("b") || s.Bought("a") || s.Len() != 4 || s.User() != "u" {
		t.Errorf("Bought(b)=%v Bought(a)=%v Len=%d User=%q", s.Bought("b"), s.Bought("a"), s.Len(), s.User())
	}
}

func TestParamsValidate(t *testing.T) {
	if err := DefaultParams().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(*Params){
		func(p *Params) { p.Weights.Purchase = -1 },
		func(p *Params) { p.Weights.PageView = 1 << 30 },
		func(p *Params) { p.Window = -time.Second },
		func(p *Params) { p.Window = time.Nanosecond },
		func(p *Params) { p.MaxSessionEvents = 0 },
		func(p *Params) { p.RecentItems = 0 },
		func(p *Params) { p.Neighbors = 0 },
		func(p *Params) { p.Pair = 9 },
	}
	for i, f := range bad {
		p := DefaultParams()
		f(&p)
		if err := p.Validate(); err == nil {
			t.Errorf("case %d: %+v validated", i, p)
		}
		if _, err := New(p); err == nil {
			t.Errorf("case %d: New accepted invalid params", i)
		}
	}
	a, _ := New(DefaultParams())
	q := DefaultParams()
	q.Window = time.Hour
	b, _ := New(q)
	if err := a.Merge(b); err == nil {
		t.Error("merging models with different params succeeded")
	}
	if r, _ := ParsePairRule(""); r != DefaultParams().Pair {
		t.Errorf("ParsePairRule(\"\") = %v, want the default", r)
	}
	for _, s := range []string{"product", "max", "min"} {
		r, err := ParsePairRule(s)
		if err != nil || r.String() != s {
			t.Errorf("ParsePairRule(%q) = %v, %v", s, r, err)
		}
	}
	if _, err := ParsePairRule("sum"); err == nil {
		t.Error("ParsePairRule(sum) succeeded")
	}
}

func TestEvaluate(t *testing.T) {
	// Shoppers go a -> b -> c (and x -> y); held-out sessions follow the same
	// paths, so every next item is the top recommendation (a: b and c tie,
	// b wins by id).
	var train, test []Event
	off := int64(0)
	add := func(dst *[]Event, session string, items ...string) {
		for i, it := range items {
			*dst = append(*dst, Event{EventID: fmt.Sprint(session, i), SessionID: session, UserID: "u" + session,
				ItemID: it, Kind: schemas.KindProductClick, Time: int64(i) * 1e6, Offset: off})
			off++
		}
	}
	for i := range 20 {
		add(&train, fmt.Sprint("t", i), "a", "b", "c")
		add(&train, fmt.Sprint("u", i), "x", "y")
	}
	add(&test, "h1", "a", "b", "c")
	add(&test, "h2", "x", "y")
	add(&test, "h3", "q") // a single item: no case
	met, err := Evaluate(DefaultParams(), train, test, 20)
	if err != nil {
		t.Fatal(err)
	}
	if met.Sessions != 2 || met.Cases != 3 || met.Hits != 3 || met.Recall != 1 || met.MRR != 1 {
		t.Errorf("Evaluate = %+v, want 2 sessions, 3 cases, all hits at rank 1", met)
	}
	// A next item nobody saw scores nothing.
	test = test[:0]
	add(&test, "h4", "a", "never-seen")
	met, _ = Evaluate(DefaultParams(), train, test, 20)
	if met.Cases != 1 || met.Hits != 0 || met.MRR != 0 {
		t.Errorf("Evaluate with an unseen next item = %+v", met)
	}
	if _, err := Evaluate(DefaultParams(), train, test, 0); err == nil {
		t.Error("k=0 accepted")
	}

	// The popularity baseline on h1 (a b c): the most popular items are
	// a, b, c (20 each) and x, y (20 each, ties by id): after "a" it predicts
	// b first (rank 1), after "a b" c (rank 1).
	m, _ := Recompute(DefaultParams(), train)
	test = test[:0]
	add(&test, "h1", "a", "b", "c")
	add(&test, "h5", "a", "y")
	met = EvaluatePredictor(test, 2, PopularityPredictor(m))
	// h1: b at 1, c at 1; h5 (after a): b, c, ... y is not in the top 2.
	if met.Cases != 3 || met.Hits != 2 || met.MRR != 2.0/3 {
		t.Errorf("popularity baseline = %+v, want 2 hits of 3 at rank 1", met)
	}

	all := append(slices.Clone(train), test...)
	tr, te := HoldOut(all, 0.3)
	if len(tr)+len(te) != len(all) || len(te) == 0 || len(tr) == 0 {
		t.Errorf("HoldOut split %d events into %d + %d", len(all), len(tr), len(te))
	}
	sessions := map[string]bool{}
	for _, e := range te {
		sessions[e.SessionID] = true
	}
	for _, e := range tr {
		if sessions[e.SessionID] {
			t.Fatalf("session %s is in both halves", e.SessionID)
		}
	}
}
