package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// loopSummary sums the speed layer's loop trace (speed.WriteLoopTrace,
// `lambdarec dev --speed-trace`) over a window: where the loop's wall time
// went, iteration by iteration.
type loopSummary struct {
	iters, empty int     // iterations; those whose poll returned no record
	recs, views  int64   // records polled, views written
	rescored     int64   // views marked for rescoring
	wall         float64 // ms from the first iteration's poll to the last one's end
	pollWait     float64 // ms inside PollRecords
	process      float64 // ms applying the polled records
	after        float64 // ms after processing: flushes, commits, metrics
	score, await float64 // of which: scoring views, waiting for the previous write
	maxLag       int64
}

// summarizeLoopTrace reads a loop trace and sums the iterations that
// started within [from, to] (Unix ms; 0 = unbounded). A last line without
// its newline (a trace still being written) is left out.
func summarizeLoopTrace(r io.Reader, from, to float64) (loopSummary, error) {
	var s loopSummary
	first, last := -1.0, 0.0
	b, err := io.ReadAll(r)
	if err != nil {
		return s, fmt.Errorf("read loop trace: %w", err)
	}
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		ln := sc.Text()
		if ln == "" || strings.HasPrefix(ln, "#") {
			continue
		}
		f := strings.Fields(ln)
		if len(f) != 14 || f[0] != "S" {
			return s, fmt.Errorf("loop trace line %d: want 14 fields starting with S, got %q", n, ln)
		}
		var v [13]float64
		for i := range 12 {
			x, err := strconv.ParseFloat(f[1+i], 64)
			if err != nil {
				return s, fmt.Errorf("loop trace line %d: field %d: %w", n, i+2, err)
			}
			v[i] = x
		}
		start, polled, processed, done := v[0], v[1], v[2], v[3]
		if from > 0 && start < from || to > 0 && start > to {
			continue
		}
		if first < 0 {
			first = start
		}
		last = done
		s.iters++
		recs := int64(v[4])
		if recs == 0 {
			s.empty++
		}
		s.recs += recs
		s.views += int64(v[6])
		s.score += v[7]
		s.await += v[8]
		s.rescored += int64(v[9])
		s.maxLag = max(s.maxLag, int64(v[10]))
		s.pollWait += polled - start
		s.process += processed - polled
		s.after += done - processed
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("read loop trace: %w", err)
	}
	if first >= 0 {
		s.wall = last - first
	}
	return s, nil
}

func (s loopSummary) String() string {
	if s.iters == 0 || s.wall <= 0 {
		return "speed loop: no iteration traced in the window"
	}
	pct := func(x float64) float64 { return 100 * x / s.wall }
	between := s.wall - s.pollWait - s.process - s.after
	perRec := func(x int64) float64 {
		if s.recs == 0 {
			return 0
		}
		return float64(x) / float64(s.recs)
	}
	return fmt.Sprintf("speed loop (%.1fs, %d iterations, %d without records): %.0f records/s, %.0f records/poll, "+
		"%.3f views/record (%.3f rescorings), max lag %d; of its wall time: %.1f%% waiting in poll, %.1f%% applying records, "+
		"%.1f%% after the poll, %.1f%% between iterations; scoring views took %.1f%%, waiting for the previous view write %.1f%% (both within applying or after)",
		s.wall/1e3, s.iters, s.empty, float64(s.recs)/(s.wall/1e3), float64(s.recs)/float64(s.iters),
		perRec(s.views), perRec(s.rescored), s.maxLag, pct(s.pollWait), pct(s.process),
		pct(s.after), pct(between), pct(s.score), pct(s.await))
}

func printLoopSummary(path string, from, to float64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("loop trace: %w", err)
	}
	defer f.Close()
	s, err := summarizeLoopTrace(f, from, to)
	if err != nil {
		return err
	}
	fmt.Println(s)
	return nil
}
