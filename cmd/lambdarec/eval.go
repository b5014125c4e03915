package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/internal/model"
)

func init() {
	register("eval", command{
		summary: "measure recommendation quality (Recall@K, MRR@K of next-item prediction) on a generated clickstream",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			var (
				o       evalOptions
				weights string
				pair    string
			)
			o.params = cfg.Model // the model section of the configuration, then flags
			w := o.params.Weights
			fs.IntVar(&o.events, "events", 300_000, "generated records to train and test on")
			fs.Int64Var(&o.seed, "seed", 1, "generator seed")
			fs.IntVar(&o.items, "items", 5000, "catalog size")
			fs.IntVar(&o.users, "users", 20000, "users")
			fs.Float64Var(&o.dupRate, "dup-rate", 0, "fraction of duplicate records")
			fs.Float64Var(&o.lateRate, "late-rate", 0, "fraction of late events")
			fs.Float64Var(&o.holdout, "holdout", 0.2, "fraction of sessions held out for testing")
			fs.IntVar(&o.k, "k", 20, "cut-off K of Recall@K and MRR@K")
			fs.IntVar(&o.partitions, "partitions", cfg.Kafka.Partitions, "partitions the records are spread over (by session)")
			fs.BoolVar(&o.json, "json", false, "print the report as JSON")
			fs.StringVar(&weights, "weights", fmt.Sprintf("%d,%d,%d,%d", w.PageView, w.ProductClick, w.AddToCart, w.Purchase), "event weights: page_view,product_click,add_to_cart,purchase")
			fs.StringVar(&pair, "pair", o.params.Pair.String(), "pair rule: min, max or product")
			fs.DurationVar(&o.params.Window, "window", o.params.Window, "co-visitation window (event time)")
			fs.IntVar(&o.params.RecentItems, "recent-items", o.params.RecentItems, "recent items scored per session")
			fs.IntVar(&o.params.Neighbors, "neighbors", o.params.Neighbors, "neighbours per item used in scoring")
			return func(ctx context.Context, e *env) error {
				w, err := parseWeights(weights)
				if err != nil {
					return fmt.Errorf("--weights: %w", err)
				}
				o.params.Weights = w
				if o.params.Pair, err = model.ParsePairRule(pair); err != nil {
					return fmt.Errorf("--pair: %w", err)
				}
				rep, err := runEval(ctx, o)
				if err != nil {
					return err
				}
				if o.json {
					enc := json.NewEncoder(e.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(rep)
				}
				fmt.Fprintf(e.stdout, "%d events (%d train, %d test), params %s\n", rep.Events, rep.Train, rep.Test, rep.Params)
				fmt.Fprintf(e.stdout, "  model       %s\n", rep.Model)
				fmt.Fprintf(e.stdout, "  popularity  %s\n", rep.Popularity)
				fmt.Fprintf(e.stdout, "  oracle      %s  (the generator's true transitions: the ceiling)\n", rep.Oracle)
				fmt.Fprintf(e.stdout, "  model build %s, evaluation %s\n", rep.Build, rep.Eval)
				return nil
			}
		},
		description: "Generates a clickstream with planted item transitions, holds out a fraction of sessions, trains the model on the rest and measures next-item prediction (Recall@K, MRR@K) of the model, of popularity and of the true transitions. Refuses a split that leaves no test session to score.",
	})
}

type evalOptions struct {
	params            model.Params
	events            int
	seed              int64
	items, users      int
	dupRate, lateRate float64
	holdout           float64
	k, partitions     int
	json              bool
}

type evalReport struct {
	Events     int           `json:"events"`
	Train      int           `json:"train_events"`
	Test       int           `json:"test_events"`
	Params     string        `json:"params"`
	Model      model.Metrics `json:"model"`
	Popularity model.Metrics `json:"popularity"`
	Oracle     model.Metrics `json:"oracle"`
	Build      time.Duration `json:"build_ns"`
	Eval       time.Duration `json:"eval_ns"`
}

func parseWeights(s string) (model.KindWeights, error) {
	parts := strings.Split(s, ",")
	if len(parts) != 4 {
		return model.KindWeights{}, fmt.Errorf("want 4 comma-separated integers, got %q", s)
	}
	var n [4]int64
	for i, p := range parts {
		v, err := strconv.ParseInt(strings.TrimSpace(p), 10, 64)
		if err != nil {
			return model.KindWeights{}, fmt.Errorf("weight %d: %w", i+1, err)
		}
		n[i] = v
	}
	return model.KindWeights{PageView: n[0], ProductClick: n[1], AddToCart: n[2], Purchase: n[3]}, nil
}

func runEval(ctx context.Context, o evalOptions) (evalReport, error) {
	if err := o.params.Validate(); err != nil {
		return evalReport{}, err
	}
	if o.events < 1 || o.k < 1 || o.partitions < 1 || !(o.holdout > 0 && o.holdout < 1) {
		return evalReport{}, fmt.Errorf("eval: need events, k and partitions positive and holdout in (0, 1)")
	}
	g, err := generate.New(generate.Config{
		Seed: o.seed, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		NumItems: o.items, NumUsers: o.users, DupRate: o.dupRate, LateRate: o.lateRate,
	})
	if err != nil {
		return evalReport{}, fmt.Errorf("eval: %w", err)
	}
	next := make([]int64, o.partitions)
	events := make([]model.Event, 0, o.events)
	for i := range o.events {
		if i%65536 == 0 && ctx.Err() != nil {
			return evalReport{}, ctx.Err()
		}
		r := g.Next()
		if r.Event == nil {
			continue // malformed
		}
		h := fnv.New32a()
		h.Write(r.Key)
		p := int32(h.Sum32() % uint32(o.partitions))
		events = append(events, model.EventFromProto(r.Event, p, next[p]))
		next[p]++
	}
	train, test := model.HoldOut(events, o.holdout)
	rep := evalReport{Events: len(events), Train: len(train), Test: len(test), Params: fmt.Sprintf("%+v", o.params)}

	t0 := time.Now()
	m, err := model.Recompute(o.params, train)
	if err != nil {
		return evalReport{}, fmt.Errorf("eval: %w", err)
	}
	m.Covisit().CacheTopK(o.params.Neighbors)
	rep.Build = time.Since(t0)
	sc, err := model.NewScorer(o.params)
	if err != nil {
		return evalReport{}, fmt.Errorf("eval: %w", err)
	}
	t1 := time.Now()
	rep.Model = model.EvaluatePredictor(test, o.k, model.ModelPredictor(m, sc, o.k))
	rep.Eval = time.Since(t1)
	if rep.Model.Cases == 0 {
		// Scores over no case are zeros that read like a broken model.
		return evalReport{}, fmt.Errorf("eval: no test session to score: %d of %d events held out, none in a session with two distinct items; generate more events (--events) or hold out more sessions (--holdout)", len(test), len(events))
	}
	rep.Popularity = model.EvaluatePredictor(test, o.k, model.PopularityPredictor(m))
	planted := g.Planted()
	oracle := planted.Oracle(o.k + 64) // enough beyond k for the prefix items it skips
	rep.Oracle = model.EvaluatePredictor(test, o.k, func(prefix []string, _ func(string) bool, k int) []string {
		return oracle.Predict(prefix[len(prefix)-1])
	})
	return rep, nil
}
