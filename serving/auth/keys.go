package auth

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Scope is a permission a key grants. Scopes are independent: admin does
// not imply read or ingest; a key that needs several lists them all.
type Scope uint8

// The scopes of lambdarec's API.
const (
	// ScopeIngest: POST /v1/events.
	ScopeIngest Scope = 1 << iota
	// ScopeRead: recommendations and similar items.
	ScopeRead
	// ScopeAdmin: /v1/status and /metrics.
	ScopeAdmin
)

// String is the scope's name in the keys file.
func (s Scope) String() string {
	switch s {
	case ScopeIngest:
		return "ingest"
	case ScopeRead:
		return "read"
	case ScopeAdmin:
		return "admin"
	}
	var names []string
	for _, one := range []Scope{ScopeIngest, ScopeRead, ScopeAdmin} {
		if s&one != 0 {
			names = append(names, one.String())
		}
	}
	return strings.Join(names, ",")
}

// ParseScope returns the scope named s.
func ParseScope(s string) (Scope, error) {
	switch s {
	case "ingest":
		return ScopeIngest, nil
	case "read":
		return ScopeRead, nil
	case "admin":
		return ScopeAdmin, nil
	}
	return 0, fmt.Errorf("unknown scope %q (want ingest, read or admin)", s)
}

// MinKeyLen is the shortest key accepted: shorter keys are guessable.
const MinKeyLen = 16

// maxLineLen bounds a line of the keys file.
const maxLineLen = 4096

// Keys is a parsed keys file. Only SHA-256 digests of the keys are kept,
// indexed by their first 8 bytes.
type Keys struct {
	n      int
	byHead map[uint64][]keyEntry
}

type keyEntry struct {
	digest [sha256.Size]byte
	scopes Scope
}

// Len is the number of keys.
func (k *Keys) Len() int { return k.n }

// Lookup returns the scopes of key and whether key is known. The key itself
// is never compared: its SHA-256 digest is, and in constant time
// (crypto/subtle) with every digest that shares its first 8 bytes. The
// timing can tell at most whether some key's digest starts like that of the
// key sent, which says nothing usable about any key (finding a key with a
// given digest prefix is a preimage search); in exchange a lookup costs the
// same with 1 key or 100,000 (see BenchmarkGuard).
func (k *Keys) Lookup(key string) (Scope, bool) {
	d := sha256.Sum256([]byte(key))
	var scopes Scope
	found := 0
	for _, e := range k.byHead[binary.BigEndian.Uint64(d[:8])] {
		eq := subtle.ConstantTimeCompare(d[:], e.digest[:])
		scopes |= Scope(subtle.ConstantTimeSelect(eq, int(e.scopes), 0))
		found |= eq
	}
	return scopes, found == 1
}

// ParseKeys reads a keys file: one "KEY SCOPE[,SCOPE…]" per line, blank
// lines and # comments (a line or the rest of a line from a word starting
// with #) ignored. Errors name the line, never the key.
func ParseKeys(r io.Reader) (*Keys, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxLineLen)
	k := &Keys{byHead: map[uint64][]keyEntry{}}
	seen := map[[sha256.Size]byte]int{}
	var errs []error
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		for i, f := range fields {
			if strings.HasPrefix(f, "#") {
				fields = fields[:i]
				break
			}
		}
		if len(fields) == 0 {
			continue
		}
		key := fields[0]
		if len(fields) == 1 {
			errs = append(errs, fmt.Errorf("line %d: a key without scopes", n))
			continue
		}
		if len(key) < MinKeyLen {
			errs = append(errs, fmt.Errorf("line %d: the key is shorter than %d characters", n, MinKeyLen))
			continue
		}
		var scopes Scope
		var bad bool
		for s := range strings.SplitSeq(strings.Join(fields[1:], ","), ",") {
			if s == "" {
				continue
			}
			sc, err := ParseScope(s)
			if err != nil {
				if len(s) >= MinKeyLen {
					// Perhaps a key (two on a line, or one with a space):
					// not echoed.
					err = fmt.Errorf("unknown scope of %d characters (want ingest, read or admin)", len(s))
				}
				errs = append(errs, fmt.Errorf("line %d: %w", n, err))
				bad = true
				continue
			}
			scopes |= sc
		}
		if bad {
			continue
		}
		if scopes == 0 {
			errs = append(errs, fmt.Errorf("line %d: a key without scopes", n))
			continue
		}
		d := sha256.Sum256([]byte(key))
		if prev, dup := seen[d]; dup {
			errs = append(errs, fmt.Errorf("line %d: the key of line %d again", n, prev))
			continue
		}
		seen[d] = n
		head := binary.BigEndian.Uint64(d[:8])
		k.byHead[head] = append(k.byHead[head], keyEntry{digest: d, scopes: scopes})
		k.n++
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("a line is longer than %d bytes", maxLineLen)
		}
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return k, nil
}
