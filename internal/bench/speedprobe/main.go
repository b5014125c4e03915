// Command speedprobe measures how long a single event takes to reach a
// speed-layer answer in a running lambdarec (dev or serve): every interval it
// posts one product_click of a new session to POST /v1/events, then reads
// GET /v1/recommendations for that session until an item comes from the speed
// layer, and reports the POST → speed answer latency (median, p90, p99,
// worst) and how many probes got no speed answer within the timeout, and how
// each speed answer was scored (as_of.speed.scored: "read" when a speed
// member scored it at read time, "view" for the stored view, answered when
// none did within serve.speed_score_timeout).
//
// With --loop-trace it instead summarizes a trace of the speed layer's
// consuming loop (lambdarec dev --speed-trace): the share of the loop's time
// spent waiting for records, applying them and writing views.
//
// A probe clicks an item that has neighbours in the batch view (GET
// /v1/items/{item_id}/similar): a session whose only item has none gets a
// speed view without items (the speed layer answered, but has nothing to
// recommend), which is not the latency being measured. The probes without a
// speed answer are still counted, and split by what they got instead: a
// speed view without items, an answer from a batch published meanwhile that
// covers the event (no speed view seen), or no view of the event at all.
//
// It is a measuring tool, not part of the product. Typical use, against a dev
// flooded by the generator:
//
//	go run ./cmd/lambdarec dev --rate 0 --batch-every 20s --http 127.0.0.1:8080 --kafka 127.0.0.1:9092 &
//	go run ./cmd/lambdarec generate --rate 50000 --duration 70s &   # (kafka.brokers: 127.0.0.1:9092)
//	go run ./internal/bench/speedprobe --base http://127.0.0.1:8080 --duration 60s
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"time"
)

func main() {
	base := flag.String("base", "http://127.0.0.1:8080", "base URL of the lambdarec API")
	dur := flag.Duration("duration", 60*time.Second, "how long to probe")
	every := flag.Duration("interval", 250*time.Millisecond, "time between two probes")
	timeout := flag.Duration("timeout", 5*time.Second, "how long a probe waits for a speed answer")
	poll := flag.Duration("poll", 2*time.Millisecond, "time between two reads of a probe")
	loopTrace := flag.String("loop-trace", "", "instead of probing, summarize this speed loop trace (lambdarec dev --speed-trace) and exit")
	from := flag.Float64("from", 0, "with --loop-trace: only the iterations from this time (Unix ms; 0: the first)")
	to := flag.Float64("to", 0, "with --loop-trace: only the iterations up to this time (Unix ms; 0: the last)")
	flag.Parse()
	if *loopTrace != "" {
		if err := printLoopSummary(*loopTrace, *from, *to); err != nil {
			fmt.Fprintln(os.Stderr, "speedprobe:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *base, *dur, *every, *timeout, *poll); err != nil {
		fmt.Fprintln(os.Stderr, "speedprobe:", err)
		os.Exit(1)
	}
}

type answer struct {
	Items []item `json:"items"`
	AsOf  struct {
		Batch *struct {
			BatchID string `json:"batch_id"`
		} `json:"batch"`
		Speed *struct {
			Scored string `json:"scored"`
		} `json:"speed"`
	} `json:"as_of"`
}

func (a *answer) batchID() string {
	if a.AsOf.Batch == nil {
		return ""
	}
	return a.AsOf.Batch.BatchID
}

// miss is what a probe without a speed answer got instead.
type miss int

const (
	// missEmptySpeedView: the speed layer's view of the session came, without
	// items (the clicked item had no neighbours yet).
	missEmptySpeedView miss = iota
	// missBatchCovered: no speed view was seen, and the last answer came from
	// a batch published after the POST (it may cover the event).
	missBatchCovered
	// missNoView: no view of the event at all.
	missNoView
	nMiss
)

// probeState follows one probe's answers.
type probeState struct {
	batchAtPost   string // batch served when the event was posted
	sawSpeedView  bool
	lastBatch     string
	gotSpeedItems bool
	// scored is as_of.speed.scored of the first answer with a speed item
	// ("read", "view"; "" from a lambdarec that does not say).
	scored string
}

// see records an answer; it reports whether it holds an item from the speed layer.
func (p *probeState) see(a *answer) bool {
	if a.AsOf.Speed != nil {
		p.sawSpeedView = true
	}
	p.lastBatch = a.batchID()
	if !p.gotSpeedItems && slices.ContainsFunc(a.Items, func(it item) bool { return it.Source == "speed" }) {
		p.gotSpeedItems = true
		if a.AsOf.Speed != nil {
			p.scored = a.AsOf.Speed.Scored
		}
	}
	return p.gotSpeedItems
}

// miss classifies a probe that got no speed item.
func (p *probeState) miss() miss {
	switch {
	case p.sawSpeedView:
		return missEmptySpeedView
	case p.lastBatch != p.batchAtPost:
		return missBatchCovered
	default:
		return missNoView
	}
}

type item struct {
	Item   string `json:"item"`
	Source string `json:"source"`
}

func run(ctx context.Context, base string, dur, every, timeout, poll time.Duration) error {
	cl := &http.Client{Timeout: 10 * time.Second}
	// Items with neighbours in the batch view, among the popular ones a user
	// without history gets: a popular item need not have any (a first batch
	// of a hundred events has a few pairs), and a click on an item without
	// neighbours gives a speed view without items.
	var items []string
	deadline := time.Now().Add(2 * time.Minute)
	for len(items) == 0 {
		a, err := recommend(ctx, cl, base, url.Values{"user_id": {"speedprobe-nobody"}, "k": {"20"}})
		if err == nil {
			for _, it := range a.Items {
				var n int
				if n, err = neighbours(ctx, cl, base, it.Item); err != nil {
					break
				}
				if n > 0 {
					items = append(items, it.Item)
				}
				if len(items) == 5 {
					break
				}
			}
		}
		if len(items) > 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no popular item with neighbours after 2 minutes (last error: %v)", err)
		}
		if !sleep(ctx, time.Second) {
			return ctx.Err()
		}
	}
	run := time.Now().UnixNano()
	var lat []time.Duration
	var misses [nMiss]int
	scored := map[string]int{} // speed answers by as_of.speed.scored
	missed := 0
	end := time.Now().Add(dur)
	for i := 0; time.Now().Before(end); i++ {
		next := time.Now().Add(every)
		session := fmt.Sprintf("speedprobe-%d-%d", run, i)
		user := "speedprobe-user-" + session
		ev := map[string]any{
			"event_id": session + "-e", "timestamp": time.Now().UTC().Format(time.RFC3339Nano),
			"user_id": user, "session_id": session,
			"product_click": map[string]any{"item_id": items[i%len(items)], "category": "speedprobe"},
		}
		body, _ := json.Marshal([]any{ev})
		var p probeState
		if a, err := recommend(ctx, cl, base, url.Values{"user_id": {"speedprobe-nobody"}, "k": {"1"}}); err == nil {
			p.batchAtPost = a.batchID()
		}
		start := time.Now()
		resp, err := cl.Post(base+"/v1/events", "application/json", bytes.NewReader(body))
		if err != nil {
			return fmt.Errorf("post event: %w", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("post event: %d %s", resp.StatusCode, b)
		}
		got := false
		for time.Since(start) < timeout {
			a, err := recommend(ctx, cl, base, url.Values{"user_id": {user}, "session_id": {session}, "k": {"10"}})
			if err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
			if err == nil && p.see(&a) {
				got = true
				break
			}
			if !sleep(ctx, poll) {
				return ctx.Err()
			}
		}
		if got {
			lat = append(lat, time.Since(start))
			scored[p.scored]++
		} else {
			missed++
			misses[p.miss()]++
		}
		if !sleep(ctx, time.Until(next)) {
			break
		}
	}
	why := fmt.Sprintf("(speed view without items %d, answered by a newer batch %d, no view %d)",
		misses[missEmptySpeedView], misses[missBatchCovered], misses[missNoView])
	if len(lat) == 0 {
		return fmt.Errorf("no speed answer within %s in %d probes %s", timeout, missed, why)
	}
	slices.Sort(lat)
	q := func(f float64) time.Duration { return lat[int(f*float64(len(lat)-1))] }
	fmt.Printf("probes %d, speed answers %d, none within %s: %d %s\n", len(lat)+missed, len(lat), timeout, missed, why)
	fmt.Printf("POST -> speed answer: median %s, p90 %s, p99 %s, worst %s\n",
		q(0.5).Round(10*time.Microsecond), q(0.9).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond))
	fmt.Println(scoredLine(scored))
	return nil
}

// scoredLine says how the speed answers were scored (as_of.speed.scored).
func scoredLine(scored map[string]int) string {
	line := fmt.Sprintf("speed answers scored at read %d, from the stored view %d", scored["read"], scored["view"])
	if n := scored[""]; n > 0 {
		line += fmt.Sprintf(", not saying %d", n)
	}
	for k, n := range scored {
		if k != "read" && k != "view" && k != "" {
			line += fmt.Sprintf(", %q %d", k, n)
		}
	}
	return line
}

func recommend(ctx context.Context, cl *http.Client, base string, q url.Values) (answer, error) {
	var a answer
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/recommendations?"+q.Encode(), nil)
	if err != nil {
		return a, err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return a, errors.New(resp.Status + ": " + string(b))
	}
	err = json.NewDecoder(resp.Body).Decode(&a)
	return a, err
}

// neighbours returns how many neighbours item has in the batch view.
func neighbours(ctx context.Context, cl *http.Client, base, id string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/items/"+url.PathEscape(id)+"/similar?k=1", nil)
	if err != nil {
		return 0, err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return 0, errors.New(resp.Status + ": " + string(b))
	}
	var a struct {
		Items []item `json:"items"`
	}
	err = json.NewDecoder(resp.Body).Decode(&a)
	return len(a.Items), err
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
