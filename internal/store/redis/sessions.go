package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/lambdarec/lambdarec/internal/store"
)

// upsertScript stores a session view unless the stored one is not older by
// version (store.Newer: the offset, then the time it was scored), sets its TTL
// and indexes it by event time. The version is the zero-padded offset followed
// by the zero-padded UpdatedAt in ns, and event times are zero-padded too, so
// string order is numeric order for every int64 (Lua numbers are doubles,
// exact only to 2^53).
//
// KEYS: the session's hash, the index. ARGV: version, event ns, view, TTL ms,
// event ms (the index score), session id, explanation (encoded;
// empty: none).
var upsertScript = goredis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'o')
if cur and cur >= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'o', ARGV[1], 't', ARGV[2], 'v', ARGV[3], 'x', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
return 1
`)

// expireScript removes the given sessions whose event time is before the
// cutoff, and the index entries of sessions the TTL removed already; it
// returns {sessions removed, sessions kept}. Each is checked again here, so a
// session updated since it was listed is kept.
//
// KEYS: the index. ARGV: cutoff ns (padded), session key prefix, ids...
var expireScript = goredis.NewScript(`
local n, kept = 0, 0
for i = 3, #ARGV do
  local k = ARGV[2] .. ARGV[i]
  local t = redis.call('HGET', k, 't')
  if not t then
    redis.call('ZREM', KEYS[1], ARGV[i])
  elseif t < ARGV[1] then
    redis.call('UNLINK', k)
    redis.call('ZREM', KEYS[1], ARGV[i])
    n = n + 1
  else
    kept = kept + 1
  end
end
return {n, kept}
`)

// pad formats n so that string order is numeric order (n >= 0).
func pad(n int64) string { return fmt.Sprintf("%020d", n) }

// version is sv's version as a string whose order is store.Newer's.
func version(sv *store.SessionView) string {
	return pad(sv.Offset) + pad(eventNS(sv.UpdatedAt))
}

// eventNS is t in Unix nanoseconds, clamped at 0: times before 1970 sort as 1970.
func eventNS(t time.Time) int64 {
	if t.IsZero() || t.Before(time.Unix(0, 0)) {
		return 0
	}
	return t.UnixNano()
}

// UpsertSession stores sv unless a view that is not older (store.Newer) is
// stored.
func (s *Store) UpsertSession(ctx context.Context, sv store.SessionView) error {
	return s.UpsertSessions(ctx, []store.SessionView{sv})
}

// UpsertSessions upserts every view of ss, in pipelines of at most
// PipelineSize scripts; it validates all of them first and stores none when
// one is invalid. Views of one session within ss are reduced to the one with
// the newest version first.
func (s *Store) UpsertSessions(ctx context.Context, ss []store.SessionView) error {
	if err := s.check(); err != nil {
		return err
	}
	for i := range ss {
		if err := store.ValidateSession(&ss[i]); err != nil {
			return err
		}
	}
	newest := make(map[string]int, len(ss))
	order := make([]int, 0, len(ss))
	for i := range ss {
		j, ok := newest[ss[i].SessionID]
		switch {
		case !ok:
			newest[ss[i].SessionID] = len(order)
			order = append(order, i)
		case store.Newer(&ss[i], &ss[order[j]]):
			order[j] = i
		}
	}
	ttl := strconv.FormatInt(s.cfg.SessionTTL.Milliseconds(), 10)
	for start := 0; start < len(order); start += s.cfg.PipelineSize {
		chunk := order[start:min(len(order), start+s.cfg.PipelineSize)]
		args := make([][]any, len(chunk))
		for n, i := range chunk {
			sv := &ss[i]
			b, err := json.Marshal(sv)
			if err != nil {
				return fmt.Errorf("upsert session %s: encode: %w", sv.SessionID, err)
			}
			ns := eventNS(sv.EventTime)
			args[n] = []any{version(sv), pad(ns), b, ttl, ns / int64(time.Millisecond), sv.SessionID, sv.Explanation}
		}
		_, err := s.runScripts(ctx, upsertScript, func(p goredis.Pipeliner) {
			for n, i := range chunk {
				upsertScript.EvalSha(ctx, p, []string{s.key.session(ss[i].SessionID), s.key.sessions()}, args[n]...)
			}
		})
		// Read your writes: forget them whether or not Redis applied them
		// all (an error may follow applied scripts).
		if s.sessions != nil {
			for _, i := range chunk {
				s.sessions.forget(ss[i].SessionID)
			}
		}
		if err != nil {
			return fmt.Errorf("upsert %d sessions: %w", len(chunk), err)
		}
	}
	return nil
}

// runScripts runs a pipeline of EVALSHA calls of script; when Redis does not
// know the script (a restart, SCRIPT FLUSH) it loads it and runs the pipeline
// again, which the scripts make harmless.
func (s *Store) runScripts(ctx context.Context, script *goredis.Script, queue func(goredis.Pipeliner)) ([]goredis.Cmder, error) {
	for attempt := 0; ; attempt++ {
		pipe := s.rdb.Pipeline()
		queue(pipe)
		cmds, err := pipe.Exec(ctx)
		if err == nil {
			return cmds, nil
		}
		for _, c := range cmds {
			if c.Err() != nil && !errors.Is(c.Err(), goredis.Nil) {
				err = c.Err()
				break
			}
		}
		if attempt > 0 || !goredis.HasErrorPrefix(err, "NOSCRIPT") {
			return nil, err
		}
		if err := script.Load(ctx, s.rdb).Err(); err != nil {
			return nil, fmt.Errorf("load script: %w", err)
		}
	}
}

// Session returns the stored view of session id: from the session cache when
// it can answer (sessioncache.go), else from Redis.
func (s *Store) Session(ctx context.Context, id string) (store.SessionView, bool, error) {
	if err := s.check(); err != nil {
		return store.SessionView{}, false, err
	}
	if id == "" {
		return store.SessionView{}, false, nil
	}
	if err := ctx.Err(); err != nil {
		return store.SessionView{}, false, err // as a read from Redis would
	}
	var tok cacheToken
	if s.sessions != nil {
		if sv, found, hit := s.sessions.get(id); hit {
			return sv, found, nil
		}
		tok = s.sessions.begin(id)
	}
	s.queries.Add(1)
	sent := time.Now()
	b, pttl, err := s.reads.hgetV(ctx, s.key.session(id))
	if errors.Is(err, goredis.Nil) {
		if s.sessions != nil {
			s.sessions.put(id, tok, store.SessionView{}, false, -1, sent)
		}
		return store.SessionView{}, false, nil
	}
	if err != nil {
		return store.SessionView{}, false, fmt.Errorf("redis store: read session %s: %w", id, err)
	}
	var sv store.SessionView
	if err := json.Unmarshal(b, &sv); err != nil {
		return store.SessionView{}, false, fmt.Errorf("redis store: read session %s: decode: %w", id, err)
	}
	if len(sv.Items) == 0 {
		sv.Items = nil
	}
	if len(sv.Purchased) == 0 {
		sv.Purchased = nil
	}
	if s.sessions != nil {
		s.sessions.put(id, tok, sv, true, pttl, sent)
	}
	return sv, true, nil
}

// ExplainedSession reads the view of session id and its explanation (the
// hash's fields v and x, one HMGET: one version) from Redis, not from the
// session cache.
func (s *Store) ExplainedSession(ctx context.Context, id string) (store.SessionView, bool, error) {
	if err := s.check(); err != nil {
		return store.SessionView{}, false, err
	}
	if id == "" {
		return store.SessionView{}, false, nil
	}
	s.queries.Add(1)
	vals, err := s.rdb.HMGet(ctx, s.key.session(id), "v", "x").Result()
	if err != nil {
		return store.SessionView{}, false, fmt.Errorf("redis store: read session %s: %w", id, err)
	}
	v, _ := vals[0].(string)
	if vals[0] == nil {
		return store.SessionView{}, false, nil
	}
	var sv store.SessionView
	if err := json.Unmarshal([]byte(v), &sv); err != nil {
		return store.SessionView{}, false, fmt.Errorf("redis store: read session %s: decode: %w", id, err)
	}
	if len(sv.Items) == 0 {
		sv.Items = nil
	}
	if len(sv.Purchased) == 0 {
		sv.Purchased = nil
	}
	if x, _ := vals[1].(string); x != "" { // none: written before explanations existed
		sv.Explanation = []byte(x)
	}
	return sv, true, nil
}

// expireChunk is how many sessions one expiry script checks: small enough
// not to hold the server for long.
const expireChunk = 500

// ExpireSessions removes the sessions whose EventTime is before cutoff,
// exactly, and returns how many it removed.
func (s *Store) ExpireSessions(ctx context.Context, cutoff time.Time) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	cut := eventNS(cutoff)
	maxScore := strconv.FormatInt(cut/int64(time.Millisecond), 10)
	var removed int64
	for offset := int64(0); ; {
		ids, err := s.rdb.ZRangeByScore(ctx, s.key.sessions(), &goredis.ZRangeBy{Min: "-inf", Max: maxScore, Offset: offset, Count: expireChunk}).Result()
		if err != nil {
			return removed, fmt.Errorf("redis store: expire sessions: list: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		args := make([]any, 0, len(ids)+2)
		args = append(args, pad(cut), s.key.sessionPrefix())
		for _, id := range ids {
			args = append(args, id)
		}
		cmds, err := s.runScripts(ctx, expireScript, func(p goredis.Pipeliner) {
			expireScript.EvalSha(ctx, p, []string{s.key.sessions()}, args...)
		})
		if s.sessions != nil {
			for _, id := range ids {
				s.sessions.forget(id)
			}
		}
		if err != nil {
			return removed, fmt.Errorf("redis store: expire sessions: %w", err)
		}
		res, err := cmds[0].(*goredis.Cmd).Int64Slice()
		if err != nil || len(res) != 2 {
			return removed, fmt.Errorf("redis store: expire sessions: script answered %v: %w", res, err)
		}
		removed += res[0]
		// Entries still in the range (a session written in the cutoff's
		// millisecond at or after it) are skipped by the next page.
		offset += res[1]
		if err := ctx.Err(); err != nil {
			return removed, fmt.Errorf("redis store: expire sessions: %w", err)
		}
	}
	return removed, nil
}
