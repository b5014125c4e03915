package serving

import (
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/lambdarec/lambdarec/internal/store"
)

// The answers of the hot endpoints are encoded by hand (answers with
// explanations, which are not hot, go through encoding/json), appending to a pooled
// buffer: the bytes are exactly those of encoding/json with HTML escaping off
// (as WriteJSON writes them; encode_test.go checks it), without reflection
// and with one allocation-free write. Other answers use WriteJSON.

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// maxPooledBuf keeps rare huge answers from pinning memory in the pool.
const maxPooledBuf = 64 << 10

// Header values shared by every encoded answer; net/http never modifies
// header value slices, so they can be shared.
var (
	headerJSON    = []string{"application/json"}
	headerNoSniff = []string{"nosniff"}
)

// writeEncoded writes the JSON that enc appends, with status 200.
func writeEncoded[T any](w http.ResponseWriter, v *T, enc func([]byte, *T) []byte) {
	bp := bufPool.Get().(*[]byte)
	b := enc((*bp)[:0], v)
	b = append(b, '\n')
	h := w.Header()
	h["Content-Type"] = headerJSON
	h["X-Content-Type-Options"] = headerNoSniff
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	if cap(b) <= maxPooledBuf {
		*bp = b
		bufPool.Put(bp)
	}
}

func appendRecommendations(b []byte, r *Recommendations) []byte {
	b = append(b, '{')
	if r.UserID != "" {
		b = append(b, `"user_id":`...)
		b = appendString(b, r.UserID)
		b = append(b, ',')
	}
	if r.SessionID != "" {
		b = append(b, `"session_id":`...)
		b = appendString(b, r.SessionID)
		b = append(b, ',')
	}
	b = append(b, `"k":`...)
	b = strconv.AppendInt(b, int64(r.K), 10)
	b = append(b, `,"items":`...)
	if r.Items == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range r.Items {
			it := &r.Items[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"item":`...)
			b = appendString(b, it.Item)
			b = append(b, `,"score":`...)
			b = appendFloat(b, it.Score)
			b = append(b, `,"source":`...)
			b = appendString(b, it.Source)
			switch it.Scale { // the two scales, pre-encoded
			case ScaleCovisitation:
				b = append(b, `,"scale":"covisitation"}`...)
			case ScalePopularity:
				b = append(b, `,"scale":"popularity"}`...)
			default:
				b = append(b, `,"scale":`...)
				b = appendString(b, it.Scale)
				b = append(b, '}')
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"as_of":`...)
	b = appendAsOf(b, &r.AsOf)
	return append(b, '}')
}

func appendSimilar(b []byte, s *Similar) []byte {
	b = append(b, `{"item_id":`...)
	b = appendString(b, s.ItemID)
	b = append(b, `,"k":`...)
	b = strconv.AppendInt(b, int64(s.K), 10)
	b = append(b, `,"items":`...)
	b = appendScored(b, s.Items)
	b = append(b, `,"as_of":`...)
	b = appendAsOf(b, &s.AsOf)
	return append(b, '}')
}

func appendScored(b []byte, list []store.Scored) []byte {
	if list == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"item":`...)
		b = appendString(b, list[i].Item)
		b = append(b, `,"score":`...)
		b = appendFloat(b, list[i].Score)
		b = append(b, '}')
	}
	return append(b, ']')
}

func appendAsOf(b []byte, a *AsOf) []byte {
	b = append(b, `{"batch":`...)
	if a.Batch == nil {
		b = append(b, "null"...)
	} else {
		bt := a.Batch
		b = append(b, `{"batch_id":`...)
		b = appendString(b, bt.BatchID)
		b = append(b, `,"boundary":`...)
		b = appendBoundary(b, bt.Boundary)
		b = append(b, `,"created_at":`...)
		b = appendTime(b, bt.CreatedAt)
		b = append(b, `,"source_max_event_time":`...)
		b = appendTime(b, bt.SourceMaxEventTime)
		b = append(b, `,"staleness_seconds":`...)
		b = appendFloat(b, bt.StalenessSeconds)
		b = append(b, '}')
	}
	b = append(b, `,"speed":`...)
	if a.Speed == nil {
		b = append(b, "null"...)
	} else {
		sp := a.Speed
		b = append(b, `{"event_time":`...)
		b = appendTime(b, sp.EventTime)
		b = append(b, `,"partition":`...)
		b = strconv.AppendInt(b, int64(sp.Partition), 10)
		b = append(b, `,"offset":`...)
		b = strconv.AppendInt(b, sp.Offset, 10)
		b = append(b, `,"staleness_seconds":`...)
		b = appendFloat(b, sp.StalenessSeconds)
		b = append(b, `,"scored":`...)
		b = appendString(b, sp.Scored)
		b = append(b, `,"scored_at":`...)
		b = appendTime(b, sp.ScoredAt)
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendBoundary writes the partition → offset map with its keys sorted as
// strings, as encoding/json does.
func appendBoundary(b []byte, m map[int32]int64) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	var arr [16]int32
	keys := arr[:0]
	for p := range m {
		keys = append(keys, p)
	}
	slices.SortFunc(keys, func(x, y int32) int {
		var xb, yb [12]byte
		xs, ys := strconv.AppendInt(xb[:0], int64(x), 10), strconv.AppendInt(yb[:0], int64(y), 10)
		return slices.Compare(xs, ys)
	})
	b = append(b, '{')
	for i, p := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = strconv.AppendInt(b, int64(p), 10)
		b = append(b, `":`...)
		b = strconv.AppendInt(b, m[p], 10)
	}
	return append(b, '}')
}

// appendTime writes t as encoding/json does (RFC 3339 with nanoseconds).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendFloat writes f as encoding/json does. encoding/json refuses NaN and
// infinities; they are written as null here (the merge drops such items, so
// only a broken store could produce one).
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 → e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string as encoding/json does with HTML
// escaping off: invalid UTF-8 becomes U+FFFD, U+2028 and U+2029 are escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
