package generate

import (
	"bytes"
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/lambdarec/lambdarec/schemas"
)

func TestPlantedStructure(t *testing.T) {
	g := newGen(t, Config{Seed: 11})
	p := g.Planted()
	if len(p.Items) != 5000 || len(p.Categories) != 50 || p.Model.Successors != 4 || p.Model.JumpRate != 0.15 {
		t.Fatalf("planted: %d items, %d categories, model %+v", len(p.Items), len(p.Categories), p.Model)
	}
	var popSum float64
	sameCat, succTotal := 0, 0
	cat := map[string]string{}
	for _, it := range p.Items {
		cat[it.ItemID] = it.Category
	}
	for _, it := range p.Items {
		popSum += it.Popularity
		if it.Price <= 0 {
			t.Fatalf("item %s: price %g", it.ItemID, it.Price)
		}
		var sum float64
		for k, s := range it.Successors {
			sum += s.P
			if s.ItemID == it.ItemID {
				t.Fatalf("item %s succeeds itself", it.ItemID)
			}
			if k > 0 && s.P > it.Successors[k-1].P {
				t.Fatalf("item %s: successors not in decreasing probability", it.ItemID)
			}
			if cat[s.ItemID] == it.Category {
				sameCat++
			}
			succTotal++
		}
		if math.Abs(sum-1) > 1e-9 {
			t.Fatalf("item %s: successor probabilities sum to %g", it.ItemID, sum)
		}
	}
	if math.Abs(popSum-1) > 1e-9 {
		t.Errorf("popularity sums to %g", popSum)
	}
	if f := float64(sameCat) / float64(succTotal); f < 0.7 || f > 0.9 {
		t.Errorf("%.2f of successors are in the item's category, want about %.2f", f, 1-crossCategory)
	}
	// Zipf: the most popular item is about 10^s times as popular as the 10th.
	pops := make([]float64, len(p.Items))
	for i, it := range p.Items {
		pops[i] = it.Popularity
	}
	slices.Sort(pops)
	slices.Reverse(pops)
	if r := pops[0] / pops[9]; math.Abs(r-10) > 0.01 {
		t.Errorf("popularity of the top item / the 10th = %g, want 10", r)
	}

	var buf bytes.Buffer
	if err := WritePlanted(&buf, p); err != nil {
		t.Fatal(err)
	}
	back, err := ReadPlanted(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, p) {
		t.Error("planted structure changed through JSON")
	}
	if _, err := ReadPlanted(bytes.NewReader([]byte(`{"seed":1,"bogus":2}`))); err == nil {
		t.Error("unknown field accepted")
	}
}

// Sessions follow the planted successors far more often than chance, with
// the planted probabilities, and the Oracle predicts them as well as the
// structure allows.
func TestSessionsFollowPlanted(t *testing.T) {
	const n = 200_000
	g := newGen(t, Config{Seed: 11})
	p := g.Planted()
	idx := map[string]int{}
	for i, it := range p.Items {
		idx[it.ItemID] = i
	}
	oracle := p.Oracle(20)
	popTop := oracle.top[:20]
	popular := map[string]bool{}
	for _, j := range popTop {
		popular[p.Items[j].ItemID] = true
	}

	last := map[string]string{} // session → item of its last view
	var transitions, followed, oracleHits, popHits int
	var chance, oracleExpected float64
	rankGot := make([]float64, 4)
	rankWant := make([]float64, 4)
	for range n {
		ev := g.Next().Event
		if ev.Kind() != schemas.KindPageView {
			continue
		}
		item, _ := ev.Item()
		prev, ok := last[ev.GetSessionId()]
		last[ev.GetSessionId()] = item
		if !ok {
			continue
		}
		transitions++
		from := p.Items[idx[prev]]
		for k, s := range from.Successors {
			chance += p.Items[idx[s.ItemID]].Popularity
			rankWant[k] += oracle.Prob(prev, s.ItemID)
			if s.ItemID == item {
				followed++
				rankGot[k]++
			}
		}
		pred := oracle.Predict(prev)
		if len(pred) != 20 {
			t.Fatalf("oracle predicts %d items", len(pred))
		}
		for _, q := range pred {
			oracleExpected += oracle.Prob(prev, q)
		}
		if slices.Contains(pred, item) {
			oracleHits++
		}
		if popular[item] {
			popHits++
		}
	}
	tr := float64(transitions)
	follow, chanceRate := float64(followed)/tr, chance/tr
	oracleRecall, popRecall := float64(oracleHits)/tr, float64(popHits)/tr
	t.Logf("%d transitions: %.3f follow a successor (chance %.4f); recall@20 oracle %.3f (expected %.3f), popularity %.3f",
		transitions, follow, chanceRate, oracleRecall, oracleExpected/tr, popRecall)
	if follow < 0.8 || follow < 50*chanceRate {
		t.Errorf("sessions follow successors %.3f of the time, chance is %.4f", follow, chanceRate)
	}
	for k := range rankGot {
		if got, want := rankGot[k]/tr, rankWant[k]/tr; math.Abs(got-want) > 0.05*want {
			t.Errorf("successor rank %d taken %.4f of the time, planted %.4f", k, got, want)
		}
	}
	if math.Abs(oracleRecall-oracleExpected/tr) > 0.01 {
		t.Errorf("oracle recall %.3f, its probabilities say %.3f", oracleRecall, oracleExpected/tr)
	}
	if oracleRecall < 0.8 || oracleRecall < 3*popRecall {
		t.Errorf("oracle recall@20 %.3f, popularity %.3f", oracleRecall, popRecall)
	}
	if got := oracle.Predict("no-such-item"); got != nil {
		t.Errorf("oracle predicts %v for an unknown item", got)
	}
}
