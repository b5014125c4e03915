package speed

import (
	"runtime"
)

// covAdd is one pair contribution to a partition's share of the deltas
// (partition.cov), by their ids in its dictionary.
type covAdd struct {
	a, b uint32
	w    int64
}

// maxCovLog bounds a partition's unsettled contributions: past it they are
// added at once.
const maxCovLog = 1 << 16

// logCov records a contribution to ps.cov, added later by settleCov or a
// goroutine of startSettle: a partition's share is read only to publish it
// and at a handoff or a revocation, never while records are applied, so
// adding it can overlap the scoring and writing of the views. Ids are
// interned on the processing goroutine (partition.covID), the additions
// keep their order: the share is the one added at once, bit for bit.
func (p *processor) logCov(ps *partition, a, b uint32, w int64) {
	ps.covLog = append(ps.covLog, covAdd{a, b, w})
	if len(ps.covLog) >= maxCovLog {
		p.settleCov()
	}
}

// userAdd is one user contribution to the deltas (Users.AddItemID).
type userAdd struct {
	user      string
	item      uint32
	t, w      int64
	purchased bool
}

// logUser records a user contribution to the deltas, added later like the
// partitions' shares: the deltas' users are read only by copyDeltas,
// deltaBytes and a rebuild, never while records are applied or views
// scored. The item is interned on the processing goroutine; adding to
// Users touches only its own user dictionary and entries, so it can run
// beside the scoring, which reads the item dictionary.
func (p *processor) logUser(user string, item uint32, t, w int64, purchased bool) {
	p.userLog = append(p.userLog, userAdd{user, item, t, w, purchased})
	if len(p.userLog) >= maxCovLog {
		p.settleCov()
	}
}

// settleUsers adds the logged user contributions to the deltas, in order.
func (p *processor) settleUsers() {
	u := p.deltas.Users()
	for _, a := range p.userLog {
		u.AddItemID(a.user, a.item, a.t, a.w, a.purchased)
	}
	clear(p.userLog)
	p.userLog = p.userLog[:0]
}

// settleOne adds ps's logged contributions to ps.cov.
func settleOne(ps *partition) {
	for _, c := range ps.covLog {
		ps.cov.AddID(c.a, c.b, c.w)
	}
	ps.covLog = ps.covLog[:0]
}

// startSettle adds the logged contributions of every partition, and the
// logged user contributions, on up to GOMAXPROCS goroutines (each
// partition's share is its own) and returns at once. settleCov waits for them; every reader of a share, and the next
// record applied, calls it first.
func (p *processor) startSettle() {
	p.settleCov()
	var todo []func()
	for _, ps := range p.parts {
		if len(ps.covLog) > 0 {
			todo = append(todo, func() { settleOne(ps) })
		}
	}
	if len(p.userLog) > 0 {
		todo = append(todo, p.settleUsers)
	}
	if len(todo) == 0 {
		return
	}
	workers := min(runtime.GOMAXPROCS(0), len(todo))
	p.settling = true
	for w := range workers {
		p.settleWG.Go(func() {
			for i := w; i < len(todo); i += workers {
				todo[i]()
			}
		})
	}
}

// settleCov waits for startSettle's goroutines and adds what is still
// logged: every partition's share is then up to date.
func (p *processor) settleCov() {
	if p.settling {
		p.settleWG.Wait()
		p.settling = false
	}
	for _, ps := range p.parts {
		if len(ps.covLog) > 0 {
			settleOne(ps)
		}
	}
	if len(p.userLog) > 0 {
		p.settleUsers()
	}
	p.usersN = p.deltas.Users().Len()
}
