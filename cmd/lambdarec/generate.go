package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/generate"
	"github.com/lambdarec/lambdarec/internal/kafka"
)

func init() {
	register("generate", command{
		summary: "produce a synthetic clickstream to Kafka or a file, deterministic by seed",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			var (
				gc        generate.Config
				start     string
				out       string
				planted   string
				clockRate float64
			)
			brokersFlag(fs, cfg)
			fs.StringVar(&cfg.Kafka.Topic, "topic", cfg.Kafka.Topic, "topic to produce to")
			fs.IntVar(&cfg.Kafka.Partitions, "partitions", cfg.Kafka.Partitions, "partitions of the topic if it has to be created")
			fs.Float64Var(&gc.Rate, "rate", 0, "records per second (0 = as fast as possible)")
			fs.Int64Var(&gc.Count, "count", 0, "stop after this many records (0 = no limit)")
			fs.DurationVar(&gc.Duration, "duration", 0, "stop after this long (0 = no limit)")
			fs.Int64Var(&gc.Seed, "seed", 1, "random seed; with --start, the output is reproducible")
			fs.StringVar(&start, "start", "", "event time of the simulated clock's start, RFC 3339 (default: now, or count/clock-rate before now when --rate is 0)")
			fs.Float64Var(&clockRate, "clock-rate", 0, "events per second of event time (default: --rate, or 100 when --rate is 0)")
			fs.Float64Var(&gc.DupRate, "dup-rate", 0, "fraction of records re-emitted byte for byte")
			fs.Float64Var(&gc.LateRate, "late-rate", 0, "fraction of events with an event time 1 minute to 3 hours in the past")
			fs.Float64Var(&gc.MalformedRate, "malformed-rate", 0, "fraction of records with undecodable values")
			fs.IntVar(&gc.NumItems, "items", 5000, "catalog size")
			fs.IntVar(&gc.NumCategories, "categories", 50, "item categories")
			fs.IntVar(&gc.NumUsers, "users", 20000, "users")
			fs.StringVar(&out, "out", "", "write JSON lines (key, base64 value, event) to this file instead of Kafka; - for stdout")
			fs.StringVar(&planted, "planted", "", "write the planted item-to-item structure (JSON) to this file")
			return func(ctx context.Context, e *env) error {
				return runGenerate(ctx, e, gc, start, clockRate, out, planted)
			}
		},
		description: "Produces a synthetic clickstream (sessions of page views, clicks, carts and purchases) to Kafka, or to a file, at a given rate; the same seed gives the same events.",
	})
}

func runGenerate(ctx context.Context, e *env, gc generate.Config, start string, clockRate float64, out, planted string) error {
	now := time.Now()
	gc.ClockRate = clockRate
	if gc.ClockRate == 0 && gc.Rate > 0 {
		gc.ClockRate = gc.Rate // event time keeps pace with the wall clock
	}
	switch {
	case start != "":
		t, err := time.Parse(time.RFC3339Nano, start)
		if err != nil {
			return fmt.Errorf("--start: %w", err)
		}
		gc.Start = t
	case gc.Rate == 0 && gc.Count > 0:
		// As fast as possible: end the event times about now, not in the future.
		cr := gc.ClockRate
		if cr == 0 {
			cr = 100
		}
		gc.Start = now.Add(-time.Duration(float64(gc.Count) / cr * float64(time.Second)))
	default:
		gc.Start = now
	}
	gc.Log = e.log.With("component", "generate")
	g, err := generate.New(gc)
	if err != nil {
		return err
	}
	if planted != "" {
		if err := writePlanted(planted, g.Planted()); err != nil {
			return err
		}
	}

	var st generate.Stats
	switch out {
	case "":
		st, err = generateToKafka(ctx, e, g)
	case "-":
		st, err = g.Run(ctx, generate.NewFileSink(e.stdout))
	default:
		st, err = generateToFile(ctx, g, out)
	}
	if out != "-" {
		fmt.Fprintf(e.stdout, "generated %d records (%d duplicates, %d late, %d malformed, %d failed) in %s: %.0f events/s\n",
			st.Records, st.Dups, st.Late, st.Malformed, st.Failed, st.Elapsed.Round(time.Millisecond), st.PerSecond())
	}
	return err
}

func generateToKafka(ctx context.Context, e *env, g *generate.Generator) (generate.Stats, error) {
	cl, err := kafka.Connect(e.cfg.Kafka.Brokers, kafka.SecurityOf(e.cfg.Kafka), kgo.ProducerLinger(generate.KafkaLinger))
	if err != nil {
		return generate.Stats{}, err
	}
	defer cl.Close()
	tctx, cancel := context.WithTimeout(ctx, e.cfg.Kafka.ProduceTimeout)
	err = kafka.EnsureTopics(tctx, cl, int32(e.cfg.Kafka.Partitions), e.cfg.Kafka.Topic)
	cancel()
	if err != nil {
		return generate.Stats{}, kafka.Explain(err, kafka.SecurityOf(e.cfg.Kafka))
	}
	e.log.Info("generating", "brokers", e.cfg.Kafka.Brokers, "topic", e.cfg.Kafka.Topic, "seed", g.Config().Seed,
		"start", g.Config().Start, "rate", g.Config().Rate, "count", g.Config().Count, "duration", g.Config().Duration)
	return g.Run(ctx, generate.NewKafkaSink(cl, e.cfg.Kafka.Topic))
}

func generateToFile(ctx context.Context, g *generate.Generator, path string) (generate.Stats, error) {
	f, err := os.Create(path)
	if err != nil {
		return generate.Stats{}, fmt.Errorf("create records file: %w", err)
	}
	st, err := g.Run(ctx, generate.NewFileSink(f))
	if cerr := f.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close records file: %w", cerr))
	}
	return st, err
}

func writePlanted(path string, p generate.Planted) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create planted file: %w", err)
	}
	err = generate.WritePlanted(f, p)
	if cerr := f.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close planted file: %w", cerr))
	}
	return err
}
