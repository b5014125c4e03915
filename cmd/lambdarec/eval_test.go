package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestEvalCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"eval", "--events", "30000", "--seed", "3", "--json", "--dup-rate", "0.02", "--late-rate", "0.02"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var rep evalReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("report %q: %v", stdout.String(), err)
	}
	m, pop, or := rep.Model, rep.Popularity, rep.Oracle
	if m.Cases < 500 || m.Cases != pop.Cases || m.Cases != or.Cases || m.K != 20 {
		t.Fatalf("cases: model %d, popularity %d, oracle %d", m.Cases, pop.Cases, or.Cases)
	}
	// The model must clearly beat the popularity baseline on the planted
	// structure, and cannot beat the true transitions by much.
	if !(m.Recall > 2*pop.Recall && m.Recall > 0.4 && m.Recall <= or.Recall+0.05 && m.MRR > pop.MRR) {
		t.Errorf("model %s, popularity %s, oracle %s", m, pop, or)
	}

	// Deterministic: the same run reports the same figures.
	stdout.Reset()
	if code := run(context.Background(), []string{"eval", "--events", "30000", "--seed", "3", "--json", "--dup-rate", "0.02", "--late-rate", "0.02"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var again evalReport
	if err := json.Unmarshal(stdout.Bytes(), &again); err != nil {
		t.Fatal(err)
	}
	if again.Model != rep.Model || again.Oracle != rep.Oracle {
		t.Errorf("second run: %s / %s, first %s / %s", again.Model, again.Oracle, rep.Model, rep.Oracle)
	}

	for _, bad := range [][]string{{"eval", "--weights", "1,2"}, {"eval", "--pair", "sum"}, {"eval", "--holdout", "1"}, {"eval", "--recent-items", "0"}} {
		stdout.Reset()
		stderr.Reset()
		if code := run(context.Background(), bad, &stdout, &stderr); code == 0 {
			t.Errorf("%v: exit 0", bad)
		}
	}
}

// A split without a test session to score (one event cannot make a case)
// is refused, not reported as all-zero scores.
func TestEvalRefusesEmptyTestSplit(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"eval", "--events", "1", "--json"}, &stdout, &stderr)
	if code == 0 {
		t.Fatalf("exit 0 with no test session; stdout %q", stdout.String())
	}
	if !strings.Contains(stderr.String(), "no test session to score") || stdout.Len() != 0 {
		t.Errorf("stdout %q, stderr %q", stdout.String(), stderr.String())
	}
}
