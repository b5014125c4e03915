// Command lambdarec runs every role of the lambdarec platform: one subcommand
// per role (broker, generate, serve, archive, batch, …, and dev for all of them
// in one process). main only wires: configuration, logger, components.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/lambdarec/lambdarec/internal/config"
	"github.com/lambdarec/lambdarec/internal/obs"
)

// command is one subcommand: its flags are registered on fs, then run is called
// with the loaded configuration. A name of two words ("batch run") makes the
// first word a group: `lambdarec batch` lists the group's commands.
type command struct {
	// summary is one line, shown in the command lists.
	summary string
	// description says what the command does, in a few sentences, for its
	// --help; the summary stands in when it is empty.
	description string
	setup       func(fs *flag.FlagSet, cfg *config.Config) func(ctx context.Context, env *env) error
}

// env is what every command gets.
type env struct {
	cfg    config.Config
	log    *slog.Logger
	stdout io.Writer
	args   []string // positional arguments after the flags
}

var commands = map[string]command{}

func register(name string, c command) { commands[name] = c }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command args name and returns the exit code: 0, 1 when the
// command failed, 2 for a usage or configuration error. Help asked for
// (help, -h, --help) goes to stdout with 0; usage errors go to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr, "")
		return 2
	}
	if isHelp(args[0]) {
		// "lambdarec help", "lambdarec help batch", "lambdarec help batch run".
		return help(ctx, args[1:], stdout, stderr)
	}
	name, args, ok := lookup(args)
	if !ok {
		return notACommand(name, args, stdout, stderr)
	}
	c := commands[name]
	// The file and the environment are loaded first; flags then override
	// them, so --config is found before the flags are parsed.
	configPath := flagValue(args, "config", os.Getenv(config.EnvConfigFile))
	cfg, err := config.Load(configPath, os.Environ())
	if err != nil {
		if !wantsHelp(args) {
			fmt.Fprintf(stderr, "lambdarec: configuration: %v\n", err)
			return 2
		}
		// Help needs no working configuration: it shows the defaults.
		cfg = config.Default()
	}
	fs := flag.NewFlagSet("lambdarec "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, "run 'lambdarec %s --help' for its flags\n", name) }
	fs.String("config", configPath, "YAML configuration file (env LAMBDAREC_CONFIG)")
	checkOnly := fs.Bool("check-config", false, "validate the configuration and exit")
	env := &env{stdout: stdout}
	runFn := c.setup(fs, &cfg)
	if wantsHelp(args) {
		commandHelp(stdout, name, c, fs)
		return 0
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "lambdarec: configuration: %v\n", err)
		return 2
	}
	if *checkOnly {
		fmt.Fprintln(stdout, "configuration ok")
		return 0
	}
	log, err := obs.NewLogger(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		fmt.Fprintf(stderr, "lambdarec: %v\n", err)
		return 2
	}
	env.cfg, env.log, env.args = cfg, log, fs.Args()
	if err := runFn(ctx, env); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("command failed", "command", name, "err", err)
		return 1
	}
	return 0
}

// flagValue returns the value of -name/--name in args, or def.
func flagValue(args []string, name, def string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		for _, p := range []string{"-" + name, "--" + name} {
			if a == p && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v
			}
		}
	}
	return def
}

// brokersFlag registers --brokers, a comma-separated list of seed brokers
// written into cfg.Kafka.Brokers.
func brokersFlag(fs *flag.FlagSet, cfg *config.Config) {
	fs.Func("brokers", "comma-separated seed brokers (default "+strings.Join(cfg.Kafka.Brokers, ",")+")", func(s string) error {
		var bs []string
		for b := range strings.SplitSeq(s, ",") {
			if b = strings.TrimSpace(b); b != "" {
				bs = append(bs, b)
			}
		}
		if len(bs) == 0 {
			return errors.New("no broker given")
		}
		cfg.Kafka.Brokers = bs
		return nil
	})
}
