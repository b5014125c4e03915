package redis

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// A minimal reader of RESP3 frames for the invalidation connection
// (sessioncache.go). go-redis hides its protocol reader, and its own
// client-side cache learns of invalidations only when a pooled connection is
// next used or drained (every few milliseconds), so the tracking connection
// is a plain socket read by one goroutine that parses the few frames it gets:
// the HELLO and CLIENT TRACKING replies, PONGs and "invalidate" pushes.

// frame is one RESP3 value. Aggregates (arrays, sets, pushes, maps: a map's
// keys and values alternate) keep their elements in elems.
type frame struct {
	kind  byte // the type byte: '+', '-', ':', '$', '*', '>', '%', '_', ...
	str   string
	elems []frame
	null  bool
}

// maxFrameElems and maxFrameBytes bound what one frame may claim, so that a
// corrupt stream cannot make the reader allocate without bound.
const (
	maxFrameElems = 1 << 20
	maxFrameBytes = 512 << 20
)

func readFrame(r *bufio.Reader) (frame, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return frame{}, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return frame{}, fmt.Errorf("resp3: malformed line %q", line)
	}
	kind, body := line[0], string(line[1:len(line)-2])
	f := frame{kind: kind}
	switch kind {
	case '+', '-', ':', ',', '(', '#':
		f.str = body
	case '_':
		f.null = true
	case '$', '=', '!':
		n, err := strconv.Atoi(body)
		if err != nil || n > maxFrameBytes {
			return frame{}, fmt.Errorf("resp3: bad length %q", body)
		}
		if n < 0 {
			f.null = true
			return f, nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return frame{}, err
		}
		f.str = string(b[:n])
	case '*', '>', '~', '%', '|':
		n, err := strconv.Atoi(body)
		if err != nil || n > maxFrameElems {
			return frame{}, fmt.Errorf("resp3: bad count %q", body)
		}
		if n < 0 {
			f.null = true
			return f, nil
		}
		if kind == '%' || kind == '|' {
			n *= 2
		}
		f.elems = make([]frame, n)
		for i := range f.elems {
			if f.elems[i], err = readFrame(r); err != nil {
				return frame{}, err
			}
		}
		if kind == '|' {
			// Attributes precede the value they describe: skip them.
			return readFrame(r)
		}
	default:
		return frame{}, fmt.Errorf("resp3: unknown type %q", kind)
	}
	return f, nil
}

// err is the frame's error, for an error reply.
func (f frame) err() error {
	if f.kind == '-' || f.kind == '!' {
		return errors.New(f.str)
	}
	return nil
}

// appendCommand appends args as a RESP array of bulk strings.
func appendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}
