package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/lambdarec/lambdarec/batch/dlq"
	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/kafka"
	"github.com/lambdarec/lambdarec/schemas"
)

func init() {
	register("dlq summary", command{
		summary: "count the dead letters by stage, reason and hour",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			dlqFlags(fs, cfg)
			asJSON := fs.Bool("json", false, "print JSON")
			return func(ctx context.Context, e *env) error {
				var s dlq.Summarizer
				n := 0
				if err := dlq.Read(ctx, dlqConnector(e.cfg), e.cfg.Kafka.DLQTopic, time.Now(), func(l dlq.Letter) error {
					s.Add(l)
					n++
					return nil
				}); err != nil {
					return fmt.Errorf("read %s: %w", e.cfg.Kafka.DLQTopic, err)
				}
				if *asJSON {
					return json.NewEncoder(e.stdout).Encode(map[string]any{"topic": e.cfg.Kafka.DLQTopic, "letters": n, "rows": s.Rows()})
				}
				fmt.Fprintf(e.stdout, "%d dead letters in %s\n", n, e.cfg.Kafka.DLQTopic)
				if n == 0 {
					return nil
				}
				w := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
				fmt.Fprintln(w, "STAGE\tREASON\tHOUR (UTC)\tCOUNT\tEXAMPLE")
				for _, r := range s.Rows() {
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\n", r.Stage, r.Class, r.Hour.Format("2006-01-02 15h"), r.Count, clip(r.Example, 80))
				}
				return w.Flush()
			}
		},
	})
	register("dlq show", command{
		summary: "print dead letters with their reasons and source positions, decoded where possible",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			dlqFlags(fs, cfg)
			reason := fs.String("reason", "", "only letters whose reason contains this text")
			limit := fs.Int("limit", 100, "print at most this many letters (0: all)")
			asJSON := fs.Bool("json", false, "print JSON lines: {dlq, time, stage, reason, source, key, value, event, invalid} — edit the events and pass the file to dlq replay --fix")
			return func(ctx context.Context, e *env) error {
				shown := 0
				errStop := errors.New("limit reached")
				enc := json.NewEncoder(e.stdout)
				err := dlq.Read(ctx, dlqConnector(e.cfg), e.cfg.Kafka.DLQTopic, time.Now(), func(l dlq.Letter) error {
					if *reason != "" && !strings.Contains(l.Reason, *reason) {
						return nil
					}
					if *limit > 0 && shown >= *limit {
						return errStop
					}
					shown++
					var ev json.RawMessage
					if l.Event != nil {
						if b, err := schemas.MarshalJSON(l.Event); err == nil {
							ev = b
						}
					}
					if *asJSON {
						return enc.Encode(struct {
							dlq.Letter
							Event json.RawMessage `json:"event,omitempty"`
						}{l, ev})
					}
					fmt.Fprintf(e.stdout, "dlq %d/%d  %s  stage %s  source %s/%d/%d\n  reason: %s\n", l.DLQ.Partition, l.DLQ.Offset,
						l.Time.Format(time.RFC3339), l.Stage, l.SourceTopic, l.Source.Partition, l.Source.Offset, l.Reason)
					switch {
					case ev != nil:
						fmt.Fprintf(e.stdout, "  event: %s\n", ev)
					default:
						fmt.Fprintf(e.stdout, "  value (%d bytes, does not decode): %q\n", len(l.Value), clip(string(l.Value), 120))
					}
					if l.Invalid == "" {
						fmt.Fprintln(e.stdout, "  now: valid (replayable as it is)")
					} else {
						fmt.Fprintf(e.stdout, "  now: %s\n", l.Invalid)
					}
					return nil
				})
				if err != nil && !errors.Is(err, errStop) {
					return fmt.Errorf("read %s: %w", e.cfg.Kafka.DLQTopic, err)
				}
				if errors.Is(err, errStop) && !*asJSON {
					fmt.Fprintf(e.stdout, "(first %d letters; --limit 0 prints all)\n", *limit)
				}
				return nil
			}
		},
	})
	register("dlq replay", command{
		summary: "send selected dead letters back to events, as they are or fixed (--fix FILE), each once",
		setup: func(fs *flag.FlagSet, cfg *config.Config) func(context.Context, *env) error {
			dlqFlags(fs, cfg)
			reason := fs.String("reason", "", "only letters whose reason contains this text (required unless --all or --fix)")
			all := fs.Bool("all", false, "select every letter")
			fix := fs.String("fix", "", "JSON lines of fixed events ({\"dlq\":{\"partition\":P,\"offset\":O},\"event\":{…}}, as dlq show --json prints); only these letters are replayed")
			dryRun := fs.Bool("dry-run", false, "select and check, produce nothing")
			return func(ctx context.Context, e *env) error {
				if *reason == "" && !*all && *fix == "" {
					return errors.New("dlq replay: select letters with --reason TEXT, --fix FILE or --all")
				}
				rc := dlq.ReplayConfig{Connect: dlqConnector(e.cfg), DLQTopic: e.cfg.Kafka.DLQTopic, Topic: e.cfg.Kafka.Topic, DryRun: *dryRun}
				if *reason != "" {
					r := *reason
					rc.Match = func(l dlq.Letter) bool { return strings.Contains(l.Reason, r) }
				}
				if *fix != "" {
					f, err := os.Open(*fix)
					if err != nil {
						return fmt.Errorf("dlq replay: %w", err)
					}
					rc.Fixes, err = dlq.ReadFixes(f, time.Now())
					f.Close()
					if err != nil {
						return fmt.Errorf("dlq replay: %s: %w", *fix, err)
					}
				}
				res, err := dlq.Replay(ctx, rc, e.log.With("component", "dlq"))
				verb := "replayed"
				if *dryRun {
					verb = "would replay"
				}
				fmt.Fprintf(e.stdout, "%d letters selected: %d %s to %s, %d already replayed before (skipped), %d still invalid without a fix (skipped)\n",
					res.Selected, res.Produced, verb, e.cfg.Kafka.Topic, res.AlreadyReplayed, res.StillInvalid)
				if *dryRun {
					fmt.Fprintf(e.stdout, "%d would be produced\n", res.Selected-res.AlreadyReplayed-res.StillInvalid)
				}
				for _, x := range res.InvalidExamples {
					fmt.Fprintf(e.stdout, "  %s\n", x)
				}
				return err
			}
		},
	})
}

func dlqFlags(fs *flag.FlagSet, cfg *config.Config) {
	brokersFlag(fs, cfg)
	fs.StringVar(&cfg.Kafka.Topic, "topic", cfg.Kafka.Topic, "events topic (replays go there)")
	fs.StringVar(&cfg.Kafka.DLQTopic, "dlq-topic", cfg.Kafka.DLQTopic, "dead-letter topic")
}

func dlqConnector(cfg config.Config) dlq.Connector {
	return func(opts ...kgo.Opt) (*kgo.Client, error) {
		return kafka.Connect(cfg.Kafka.Brokers, kafka.SecurityOf(cfg.Kafka), append([]kgo.Opt{kgo.ClientID("lambdarec-dlq")}, opts...)...)
	}
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
