package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lambdarec/lambdarec/internal/model"
	"github.com/lambdarec/lambdarec/serving"
)

// The README's walk-through, as a new user runs it: `lambdarec dev` with its
// defaults (50 generated events/s, seed 1, a batch every minute), then the
// curls of the README's "While lambdarec dev runs" block.
const (
	walkItem    = "i02621" // the README's item: the most popular of seed 1, it soon has neighbours
	walkUser    = "u000001"
	walkSession = "s1"
)

// TestDevWalkThrough follows the README: a first batch within seconds of
// start (not after --batch-every), the README's item has similar items, and
// after one click on it the session's recommendations come from the speed
// layer, each with an explanation whose contributions recompute its score.
func TestDevWalkThrough(t *testing.T) {
	if testing.Short() {
		t.Skip("starts lambdarec dev; not in -short")
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"similar?k=", walkItem, "session_id=" + walkSession, "explain=true", `"source": "speed"`} {
		if !strings.Contains(string(readme), s) {
			t.Fatalf("the README's walk-through no longer mentions %q: update this test with it", s)
		}
	}
	bin := buildLambdarec(t)
	httpAddr, kafkaAddr := freeAddr(t), freeAddr(t)
	p := startDev(t, bin, t.TempDir(), httpAddr, kafkaAddr, "--seed", "1")
	ready := time.Now()

	// A first batch within seconds: dev runs early batches (3 s, then 6,
	// 12, 24 s later) before its one-minute schedule. Generous bound: the
	// machine is shared, and when the archive has committed nothing by the
	// run at 21 s (a loaded machine), the next early run is at 45 s.
	waitFor(t, 90*time.Second, "a first batch", func() bool {
		r := p.recommendations(t, url.Values{"user_id": {walkUser}, "session_id": {walkSession}, "k": {"5"}})
		return r.AsOf.Batch != nil
	})
	t.Logf("first batch served %s after ready", time.Since(ready).Round(100*time.Millisecond))

	// curl …/v1/items/i02621/similar?k=5
	waitFor(t, 60*time.Second, "similar items of "+walkItem, func() bool {
		var sim serving.Similar
		getJSON(t, p.base+"/v1/items/"+walkItem+"/similar?k=5", &sim)
		return len(sim.Items) > 0
	})
	t.Logf("%s has similar items %s after ready", walkItem, time.Since(ready).Round(100*time.Millisecond))

	// curl -XPOST …/v1/events (a click on the item in session s1), then
	// curl …/v1/recommendations?user_id=u000001&session_id=s1&k=5&explain=true
	p.post(t, map[string]any{
		"event_id": "e1", "timestamp": time.Now().UTC().Format(time.RFC3339), "user_id": walkUser, "session_id": walkSession,
		"product_click": map[string]any{"item_id": walkItem, "category": "cat-027"},
	})
	posted := time.Now()
	q := url.Values{"user_id": {walkUser}, "session_id": {walkSession}, "k": {"5"}, "explain": {"true"}}
	var r serving.Recommendations
	waitFor(t, 10*time.Second, `"source": "speed"`, func() bool {
		r = p.recommendations(t, q)
		return sources(r)[serving.SourceSpeed] > 0
	})
	t.Logf("speed items %s after the POST", time.Since(posted).Round(time.Millisecond))
	// dev's speed layer stores only the session's inputs
	// (speed.score_views: false): its speed items are scored at read.
	if r.AsOf.Speed == nil || r.AsOf.Speed.Scored != serving.ScoredRead {
		t.Fatalf("speed items not scored at read: as_of %+v", r.AsOf)
	}

	// Each speed item's explanation names the clicked item and its
	// contributions add up to explanation.score, which is the served score
	// bit for bit: the explanation is the read-time scoring's, of the items
	// it scored (in a standalone serve whose members store scored views, it
	// is stored with the view: speed's TestStoredExplanationsServeStandalone).
	agreed, speedItems := 0, 0
	for _, it := range r.Items {
		if it.Source != serving.SourceSpeed {
			continue
		}
		speedItems++
		e := it.Explanation
		if e == nil || len(e.From) == 0 || e.Score == nil {
			t.Fatalf("speed item %s without an explanation: %+v", it.Item, e)
		}
		var sum float64
		for _, c := range e.From {
			if c.Item != walkItem || c.Rank != 0 || c.RankWeight != model.RecencyWeight(0) || c.TopCount <= 0 ||
				c.BatchCount < 0 || c.SpeedCount < 0 || c.BatchCount+c.SpeedCount > c.TopCount {
				t.Fatalf("speed item %s: contribution %+v", it.Item, c)
			}
			if want := c.RankWeight * float64(c.BatchCount+c.SpeedCount) / float64(c.TopCount); c.Value != want {
				t.Fatalf("speed item %s: value %v, rank_weight × count / top_count = %v", it.Item, c.Value, want)
			}
			sum += c.Value
		}
		if sum != *e.Score {
			t.Fatalf("speed item %s: contributions sum to %v, explanation.score %v", it.Item, sum, *e.Score)
		}
		if *e.Score == it.Score {
			agreed++
		}
	}
	if agreed != speedItems {
		t.Fatalf("%d of %d speed items: explanation.score = served score", agreed, speedItems)
	}
	for _, it := range r.Items {
		if want := map[string]string{serving.SourceSpeed: serving.ScaleCovisitation, serving.SourceBatch: serving.ScaleCovisitation,
			serving.SourcePopular: serving.ScalePopularity}[it.Source]; it.Scale != want {
			t.Errorf("item %+v: scale %q, want %q", it, it.Scale, want)
		}
	}

	// Batch items are explained too, from the batch view alone: the items
	// of a user's batch recommendations add up to their scores exactly.
	explained := 0
	waitFor(t, 60*time.Second, "an explained batch item", func() bool {
		for u := 1; u <= 200 && explained == 0; u++ {
			r := p.recommendations(t, url.Values{"user_id": {fmt.Sprintf("u%06d", u)}, "k": {"20"}, "explain": {"true"}})
			for _, it := range r.Items {
				e := it.Explanation
				if it.Source != serving.SourceBatch || e == nil {
					continue
				}
				if len(e.From) == 0 {
					if !strings.Contains(e.Unavailable, "new batch") { // a batch published while it was read: ask again
						t.Fatalf("batch item %+v: not explained: %q", it, e.Unavailable)
					}
					continue
				}
				var sum float64
				for _, c := range e.From {
					sum += c.Value
				}
				if sum != it.Score || e.Score == nil || *e.Score != it.Score {
					t.Fatalf("batch item %s of u%06d: contributions add up to %v, score %v", it.Item, u, sum, it.Score)
				}
				explained++
			}
		}
		return explained > 0
	})
	t.Logf("%d batch items explained", explained)

	// curl …/v1/status; the page at /ui.
	var st serving.Status
	getJSON(t, p.base+"/v1/status", &st)
	if len(st.Layers) < 4 || st.Batch == nil {
		t.Errorf("status %+v", st)
	}
	resp, err := http.Get(p.base + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("/ui: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	p.stop(t)
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}
