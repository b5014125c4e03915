package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"time"

	"github.com/lambdarec/lambdarec/internal/store"
)

// Fixture describes the synthetic serving-store content of the serving
// benchmark. Zero values take the defaults.
type Fixture struct {
	// Items in the catalogue, each with Width neighbours. Default: 20,000.
	Items int
	// Users, each with Width batch recommendations. Default: 20,000.
	Users int
	// Sessions, each with SessionItems real-time recommendations and two
	// purchases; every other session is past the batch boundary (served as
	// speed), the others are covered by the batch. Default: 20,000.
	Sessions int
	// Width of the batch lists. Default: 50.
	Width int
	// SessionItems per session view. Default: 20.
	SessionItems int
	// Partitions of the Kafka topic. Default: 6.
	Partitions int32
	// Seed makes the content reproducible. Default: 1.
	Seed uint64
}

func (f *Fixture) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&f.Items, 20_000)
	def(&f.Users, 20_000)
	def(&f.Sessions, 20_000)
	def(&f.Width, 50)
	def(&f.SessionItems, 20)
	if f.Partitions <= 0 {
		f.Partitions = 6
	}
	if f.Seed == 0 {
		f.Seed = 1
	}
}

// boundaryOffset is the batch boundary of every partition: sessions at
// offsets above it are newer than the batch.
const boundaryOffset = 1_000_000

// ItemID, UserID and SessionID name the fixture's entities.
func ItemID(i int) string    { return "item-" + strconv.Itoa(i) }
func UserID(i int) string    { return "user-" + strconv.Itoa(i) }
func SessionID(i int) string { return "session-" + strconv.Itoa(i) }

// Seed publishes the fixture's batch view under batchID and upserts its
// sessions into st. Items are drawn from a Zipf distribution over the
// catalogue, so popular items recur across lists as they do in real views.
func Seed(ctx context.Context, st store.Store, f Fixture, batchID string) error {
	f.defaults()
	r := rand.New(rand.NewPCG(f.Seed, 7))
	zipf := rand.NewZipf(r, 1.1, 4, uint64(f.Items-1))
	list := func(n int) []store.Scored {
		l := make([]store.Scored, 0, n)
		seen := make(map[uint64]bool, n)
		for len(l) < n && len(seen) < f.Items {
			it := zipf.Uint64()
			if seen[it] {
				continue
			}
			seen[it] = true
			l = append(l, store.Scored{Item: ItemID(int(it)), Score: float64(n-len(l)) + r.Float64()})
		}
		return l
	}
	now := time.Now().UTC()
	boundary := make(map[int32]int64, f.Partitions)
	for p := range f.Partitions {
		boundary[p] = boundaryOffset
	}
	v := &store.BatchView{
		Meta: store.BatchMeta{
			BatchID: batchID, SnapshotID: 1, Boundary: boundary, Events: int64(f.Sessions) * 8,
			CreatedAt: now.Add(-time.Minute), SourceMaxEventTime: now.Add(-2 * time.Minute),
		},
		Neighbors: make(map[string][]store.Scored, f.Items),
		UserRecs:  make(map[string][]store.Scored, f.Users),
	}
	for i := range f.Items {
		v.Neighbors[ItemID(i)] = list(f.Width)
	}
	for i := range f.Users {
		v.UserRecs[UserID(i)] = list(f.Width)
	}
	v.Popular = make([]store.Scored, 0, 500)
	for i := range min(500, f.Items) {
		v.Popular = append(v.Popular, store.Scored{Item: ItemID(i), Score: float64(1000 - i)})
	}
	if err := st.PublishBatch(ctx, v); err != nil {
		return fmt.Errorf("seed batch view: %w", err)
	}
	const chunk = 5000
	ss := make([]store.SessionView, 0, chunk)
	for i := range f.Sessions {
		off := int64(boundaryOffset - 1 - i)
		if i%2 == 1 {
			off = boundaryOffset + 1 + int64(i)
		}
		items := list(f.SessionItems)
		ss = append(ss, store.SessionView{
			SessionID: SessionID(i), UserID: UserID(i % f.Users), Items: items,
			Purchased: []string{items[0].Item, ItemID(int(zipf.Uint64()))},
			EventTime: now.Add(-time.Second), Partition: int32(i) % f.Partitions, Offset: off, UpdatedAt: now,
		})
		if len(ss) == chunk || i == f.Sessions-1 {
			if err := st.UpsertSessions(ctx, ss); err != nil {
				return fmt.Errorf("seed sessions: %w", err)
			}
			ss = ss[:0]
		}
	}
	return nil
}

// DefaultSessionShare is the share of requests that name a session.
const DefaultSessionShare = 0.7

// RecommendationTargets returns n URLs of GET /v1/recommendations on base
// (http://host:port) for the fixture: sessionShare of them name a session
// and its user (half of those sessions are newer than the batch); of the
// others, two thirds name a known user and one third an unknown user
// (popular items). A negative sessionShare means DefaultSessionShare.
func RecommendationTargets(base string, f Fixture, n, k int, sessionShare float64) []string {
	f.defaults()
	if sessionShare < 0 {
		sessionShare = DefaultSessionShare
	}
	r := rand.New(rand.NewPCG(f.Seed, 11))
	out := make([]string, n)
	for i := range out {
		q := url.Values{"k": {strconv.Itoa(k)}}
		switch x := r.Float64(); {
		case x < sessionShare:
			s := r.IntN(f.Sessions)
			q.Set("session_id", SessionID(s))
			q.Set("user_id", UserID(s%f.Users))
		case x < sessionShare+(1-sessionShare)*2/3:
			q.Set("user_id", UserID(r.IntN(f.Users)))
		default:
			q.Set("user_id", "unknown-"+strconv.Itoa(r.IntN(1_000_000)))
		}
		out[i] = base + "/v1/recommendations?" + q.Encode()
	}
	return out
}
