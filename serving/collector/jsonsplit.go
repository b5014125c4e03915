package collector

import (
	"errors"
	"fmt"
)

// The JSON bodies of POST /v1/events are split into their events without
// copying or decoding them: only the top level of the body (an array, or an
// object with an "events" array) is parsed here; each event is then decoded
// by protojson, which checks it fully. Any body accepted overall is therefore
// valid JSON.

var (
	errUnexpectedEnd = errors.New("unexpected end of JSON input")
	errTooMany       = errors.New("too many events")
)

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipString returns the index just past the JSON string starting at b[i] == '"'.
func skipString(b []byte, i int) (int, error) {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1, nil
		}
	}
	return len(b), errUnexpectedEnd
}

// skipValue returns the index just past the JSON value starting at b[i]
// (which is not whitespace). Objects and arrays are skipped by bracket depth,
// strings aware; their content is checked later by the event decoder.
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return i, errUnexpectedEnd
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				j, err := skipString(b, i)
				if err != nil {
					return j, err
				}
				i = j
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return i, errUnexpectedEnd
	}
	// A number or literal: everything up to the next delimiter.
	start := i
	for i < len(b) && !isDelim(b[i]) {
		i++
	}
	if i == start {
		return i, fmt.Errorf("unexpected %q at offset %d", b[i], i)
	}
	return i, nil
}

func isDelim(c byte) bool {
	switch c {
	case ',', ':', '[', ']', '{', '}', '"':
		return true
	}
	return isSpace(c)
}

// splitArray returns the elements of the JSON array that b holds (surrounding
// whitespace allowed), as subslices of b. It fails with errTooMany as soon as
// it finds more than max elements.
func splitArray(b []byte, max int) ([][]byte, error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return nil, errors.New("not a JSON array")
	}
	i = skipSpace(b, i+1)
	var elems [][]byte
	if i < len(b) && b[i] == ']' {
		i++
	} else {
		for {
			j, err := skipValue(b, i)
			if err != nil {
				return nil, err
			}
			if len(elems) == max {
				return nil, errTooMany
			}
			elems = append(elems, b[i:j])
			i = skipSpace(b, j)
			if i >= len(b) {
				return nil, errUnexpectedEnd
			}
			if b[i] == ']' {
				i++
				break
			}
			if b[i] != ',' {
				return nil, fmt.Errorf("expected , or ] at offset %d, found %q", i, b[i])
			}
			i = skipSpace(b, i+1)
		}
	}
	if i = skipSpace(b, i); i != len(b) {
		return nil, fmt.Errorf("unexpected data after the array at offset %d", i)
	}
	return elems, nil
}

// eventsMember reports whether the JSON object b is a batch wrapper, that is,
// has a top-level "events" member, and returns that member's value. A body
// that is not a well-formed object is reported as no wrapper (wrapper false,
// err nil): it is then decoded as one event, whose decoder reports the
// problem. err is set for a wrapper with other members or a duplicate
// "events".
func eventsMember(b []byte) (value []byte, wrapper bool, err error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, false, nil
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil, false, nil
	}
	var other []byte
	hasOther := false
	for {
		if i >= len(b) || b[i] != '"' {
			return nil, false, nil
		}
		ke, err := skipString(b, i)
		if err != nil {
			return nil, false, nil
		}
		key := b[i+1 : ke-1]
		i = skipSpace(b, ke)
		if i >= len(b) || b[i] != ':' {
			return nil, false, nil
		}
		i = skipSpace(b, i+1)
		ve, err := skipValue(b, i)
		if err != nil {
			return nil, false, nil
		}
		if string(key) == "events" {
			if wrapper {
				return nil, true, errors.New(`duplicate "events" member`)
			}
			value, wrapper = b[i:ve], true
		} else if !hasOther {
			other, hasOther = key, true
		}
		i = skipSpace(b, ve)
		if i >= len(b) {
			return nil, false, nil
		}
		if b[i] == '}' {
			break
		}
		if b[i] != ',' {
			return nil, false, nil
		}
		i = skipSpace(b, i+1)
	}
	if skipSpace(b, i+1) != len(b) || !wrapper {
		return nil, false, nil
	}
	if hasOther {
		return nil, true, fmt.Errorf(`unknown member %q next to "events"`, other)
	}
	return value, true, nil
}
