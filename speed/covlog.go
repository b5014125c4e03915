package speed

import (
	"runtime"

	"github.com/lambdarec/lambdarec/internal/model"
)

// covAdd is one pair contribution to a partition's share of the deltas
// (partition.cov), by their ids in its dictionary.
type covAdd struct {
	a, b uint32
	w    int64
}

// lazySettleMin is a threshold of logged contributions (pair and user ones
// together) from which startSettle may add them instead of every poll's:
// 8,192 is ~25 ms of a 50,000 events/s stream, 128 KiB of pair log; each is
// 16 bytes (a user's holds its string too). The layer does not use it
// (processor.settleMin is 1: every poll's logs): settling lazily cost 7% less
// CPU per event in BenchmarkSteadyPolls (its own clock) but lengthened
// BenchmarkLatency's tail at 50,000 events/s (p99 152–224 ms against
// 119–154 ms settling every poll, three alternated runs each, the same CPU
// per event): the batches of 8,192 the next poll waits for are stalls.
// BenchmarkSteadyPolls and TestLazySettleKeepsTheShares keep it measurable.
const lazySettleMin = 1 << 13

// maxCovLog bounds a partition's unsettled contributions (16 bytes each),
// and the deltas' unsettled user contributions: past it they are added at
// once, on the processing goroutine. It is above what a poll of
// max_poll_records (50,000) makes in one partition of BenchmarkThroughput's
// stream (at 1<<16 a partition's log reached it within a poll there, and
// the synchronous settle was ~8% of applying the records).
const maxCovLog = 1 << 18

// logCov records a contribution to ps.cov, added later by settleCov or a
// goroutine of startSettle: a partition's share is read only to publish it
// and at a handoff or a revocation, never while records are applied, so
// adding it can overlap the scoring and writing of the views. Ids are
// interned on the processing goroutine (partition.covID), the additions
// keep their order: the share is the one added at once, bit for bit.
func (p *processor) logCov(ps *partition, a, b uint32, w int64) {
	ps.covLog = append(ps.covLog, covAdd{a, b, w})
	if len(ps.covLog) >= maxCovLog {
		p.waitSettle()
		settleOne(ps) // this partition's only: the others' logs wait for startSettle
	}
}

// userAdd is one user contribution to the deltas (Users.AddIDs): the
// user's id in the deltas' user dictionary (Users.SessionUser) and the
// item's in their item dictionary.
type userAdd struct {
	user      uint32
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
func (p *processor) logUser(user, item uint32, t, w int64, purchased bool) {
	p.userLog = append(p.userLog, userAdd{user, item, t, w, purchased})
	if len(p.userLog) >= maxCovLog {
		p.waitSettle()
		p.settleUsers()
	}
}

// settleUsers adds the logged user contributions to the deltas, in order.
func (p *processor) settleUsers() {
	addUsers(p.deltas.Users(), p.userLog)
	p.userLog = dropSettled(p.userLog, len(p.userLog))
}

// addUsers adds logged user contributions to u, in order.
func addUsers(u *model.Users, log []userAdd) {
	for _, a := range log {
		u.AddIDs(a.user, a.item, a.t, a.w, a.purchased)
	}
}

// settleOne adds ps's logged contributions to ps.cov.
func settleOne(ps *partition) {
	addCov(ps.cov, ps.covLog)
	ps.covLog = ps.covLog[:0]
}

// addCov adds logged pair contributions to cov, in order.
func addCov(cov *model.Covisit, log []covAdd) {
	for _, c := range log {
		cov.AddID(c.a, c.b, c.w)
	}
}

// dropSettled returns log without its first n entries, which were added
// (cleared, so the strings they hold can be collected).
func dropSettled[T any](log []T, n int) []T {
	clear(log[:n])
	rest := copy(log, log[n:])
	clear(log[rest:])
	return log[:rest]
}

// startSettle adds the logged contributions of every partition, and the
// logged user contributions, on up to GOMAXPROCS goroutines (each
// partition's share is its own) and returns at once. settleCov waits for
// them; every reader of a share, and the next record applied, calls it
// first. The goroutines read the logs as they are now and write only the
// shares and the deltas' users; the logs are emptied when they are waited
// for, on the processing goroutine (where deltaBytes reads them).
//
// It starts them only once the logs hold p.settleMin entries or more: 1 in
// the layer (every poll's), lazySettleMin in the benchmark that compares
// the two. Nothing reads the shares or the deltas' users while records are
// applied or views scored, and every reader settles first (settleCov).
func (p *processor) startSettle() {
	// Only the previous settle is waited for: settleCov here would add
	// every log at once, leaving the goroutines nothing to do.
	p.waitSettle()
	n := len(p.userLog)
	for _, ps := range p.parts {
		n += len(ps.covLog)
	}
	if n == 0 || n < p.settleMin {
		return
	}
	var todo []func()
	for _, ps := range p.parts {
		if n := len(ps.covLog); n > 0 {
			log, cov := ps.covLog, ps.cov
			p.inflight = append(p.inflight, inflightLog{ps, n})
			todo = append(todo, func() { addCov(cov, log) })
		}
	}
	if n := len(p.userLog); n > 0 {
		log, u := p.userLog, p.deltas.Users()
		p.usersInflight = n
		todo = append(todo, func() { addUsers(u, log) })
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

// inflightLog is a partition's log startSettle's goroutines add: its first n
// entries.
type inflightLog struct {
	ps *partition
	n  int
}

// settleCov waits for startSettle's goroutines and adds what is still
// logged: every partition's share is then up to date.
func (p *processor) settleCov() {
	p.waitSettle()
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

// waitSettle waits for startSettle's goroutines and drops what they added
// from the logs.
func (p *processor) waitSettle() {
	if !p.settling {
		return
	}
	p.settleWG.Wait()
	p.settling = false
	for _, f := range p.inflight {
		f.ps.covLog = dropSettled(f.ps.covLog, f.n)
	}
	clear(p.inflight)
	p.inflight = p.inflight[:0]
	p.userLog = dropSettled(p.userLog, p.usersInflight)
	p.usersInflight = 0
}
