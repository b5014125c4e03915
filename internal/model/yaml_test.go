package model

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

// Params decode from YAML as a configuration section, and round-trip.
func TestParamsYAML(t *testing.T) {
	p := DefaultParams()
	b, err := yaml.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var q Params
	if err := yaml.Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	if q != p {
		t.Fatalf("round trip: %+v, want %+v", q, p)
	}
	q = DefaultParams()
	if err := yaml.Unmarshal([]byte("pair: max\nwindow: 10m\nweights: {purchase: 16}\n"), &q); err != nil {
		t.Fatal(err)
	}
	if q.Pair != PairMax || q.Window.Minutes() != 10 || q.Weights.Purchase != 16 || q.Weights.PageView != 1 {
		t.Fatalf("decoded %+v", q)
	}
	if err := yaml.Unmarshal([]byte("pair: sum\n"), &q); err == nil {
		t.Fatal("pair: sum accepted")
	}
}
