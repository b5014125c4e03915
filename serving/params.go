package serving

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Query parsing of the read API. Parameters the endpoint does not take are
// ignored, so cache-busters (`_=123`) and tracking parameters (`utm_*`) do
// not break a request; a known parameter with a wrong value, or given twice,
// is a 400 naming it.

// recsQuery is the parsed query of GET /v1/recommendations.
type recsQuery struct {
	UserID    string
	SessionID string
	K         int
	// Explain asks for the reasons behind each item (explain=true, the
	// gRPC request's explain field).
	Explain bool
}

// similarQuery is the parsed query of GET /v1/items/{item_id}/similar.
type similarQuery struct {
	ItemID string
	K      int
}

// paramError is a 400 answer naming the offending parameter.
func paramError(code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// parseRecsQuery parses raw, the request's raw query string.
func (c *APIConfig) parseRecsQuery(raw string) (recsQuery, *Error) {
	q := recsQuery{}
	var seen [4]bool
	err := eachParam(raw, func(key, val string) *Error {
		var slot int
		switch key {
		case "user_id":
			slot = 0
		case "session_id":
			slot = 1
		case "k":
			slot = 2
		case "explain":
			slot = 3
		default:
			return nil // not ours: ignored
		}
		if seen[slot] {
			return paramError(CodeInvalidParameter, key, "%s is given more than once", key)
		}
		seen[slot] = true
		var e *Error
		switch slot {
		case 0:
			q.UserID, e = checkID(key, val)
		case 1:
			q.SessionID, e = checkID(key, val)
		case 2:
			q.K, e = c.parseK(val)
		case 3:
			q.Explain, e = parseBool(key, val)
		}
		return e
	})
	if err != nil {
		return q, err
	}
	return q, c.checkRecsQuery(&q)
}

// checkRecsQuery checks q's ids and k (0 takes the default) and that a user
// or a session is named.
func (c *APIConfig) checkRecsQuery(q *recsQuery) *Error {
	if _, e := checkID("user_id", q.UserID); e != nil {
		return e
	}
	if _, e := checkID("session_id", q.SessionID); e != nil {
		return e
	}
	if q.K == 0 {
		q.K = c.DefaultK
	}
	if q.K < 1 || q.K > c.MaxK {
		return paramError(CodeInvalidParameter, "k", "k must be an integer between 1 and %d, got %d", c.MaxK, q.K)
	}
	if q.UserID == "" && q.SessionID == "" {
		return paramError(CodeMissingParameter, "user_id", "user_id or session_id is required")
	}
	return nil
}

// parseSimilarQuery parses the item id (the path value, already unescaped)
// and raw, the request's raw query string.
func (c *APIConfig) parseSimilarQuery(item, raw string) (similarQuery, *Error) {
	q := similarQuery{ItemID: item}
	seenK := false
	err := eachParam(raw, func(key, val string) *Error {
		if key != "k" {
			return nil // not ours: ignored
		}
		if seenK {
			return paramError(CodeInvalidParameter, key, "k is given more than once")
		}
		seenK = true
		var e *Error
		q.K, e = c.parseK(val)
		return e
	})
	if err != nil {
		return q, err
	}
	return q, c.checkSimilarQuery(&q)
}

// checkSimilarQuery checks q's item id and k (0 takes the default).
func (c *APIConfig) checkSimilarQuery(q *similarQuery) *Error {
	id, err := checkID("item_id", q.ItemID)
	if err != nil {
		return err
	}
	if id == "" {
		return paramError(CodeMissingParameter, "item_id", "item_id is required")
	}
	if q.K == 0 {
		q.K = c.DefaultK
	}
	if q.K < 1 || q.K > c.MaxK {
		return paramError(CodeInvalidParameter, "k", "k must be an integer between 1 and %d, got %d", c.MaxK, q.K)
	}
	return nil
}

// parseK parses k; empty is 0 (the default, filled in by the check).
func (c *APIConfig) parseK(val string) (int, *Error) {
	if val == "" {
		return 0, nil
	}
	k, err := strconv.Atoi(val)
	if err != nil || k < 1 || k > c.MaxK {
		return 0, paramError(CodeInvalidParameter, "k", "k must be an integer between 1 and %d, got %q", c.MaxK, clip(val))
	}
	return k, nil
}

// parseBool accepts true/false/1/0; empty (a bare "explain") is true.
func parseBool(key, val string) (bool, *Error) {
	switch val {
	case "", "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return false, paramError(CodeInvalidParameter, key, "%s must be true or false, got %q", key, clip(val))
}

// checkID accepts an empty id (the parameter is then absent) or a valid
// UTF-8 string of at most MaxIDLen bytes.
func checkID(field, v string) (string, *Error) {
	switch {
	case len(v) > MaxIDLen:
		return "", paramError(CodeInvalidParameter, field, "%s is longer than %d bytes", field, MaxIDLen)
	case !utf8.ValidString(v):
		return "", paramError(CodeInvalidParameter, field, "%s is not valid UTF-8", field)
	}
	return v, nil
}

// eachParam calls fn for each key=value pair of the raw query, unescaped,
// and stops at the first error. Empty pairs ("a=1&&b=2") are skipped; a pair
// without "=" has an empty value. Malformed escapes and semicolons are
// errors, as in net/url.ParseQuery.
func eachParam(raw string, fn func(key, val string) *Error) *Error {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		if strings.IndexByte(pair, ';') >= 0 {
			return paramError(CodeInvalidParameter, "", "the query contains a semicolon; separate parameters with &")
		}
		key, val, _ := strings.Cut(pair, "=")
		key, err := unescape(key)
		if err != nil {
			return paramError(CodeInvalidParameter, "", "the query has a malformed escape in %q", clip(pair))
		}
		val, err = unescape(val)
		if err != nil {
			return paramError(CodeInvalidParameter, clip(key), "parameter %s has a malformed escape", clip(key))
		}
		if e := fn(key, val); e != nil {
			return e
		}
	}
	return nil
}

func unescape(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, nil
	}
	return url.QueryUnescape(s)
}

// clip shortens what a client sent before it is echoed in an error.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
