package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
)

func TestHelp(t *testing.T) {
	f := func(args []string, wantCode int, wantStdout, wantStderr []string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr)
		if code != wantCode {
			t.Errorf("%q: exit %d, want %d; stderr %q", args, code, wantCode, stderr.String())
		}
		for _, w := range wantStdout {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%q: stdout lacks %q:\n%s", args, w, stdout.String())
			}
		}
		for _, w := range wantStderr {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("%q: stderr lacks %q:\n%s", args, w, stderr.String())
			}
		}
		if wantCode == 0 && stderr.Len() > 0 {
			t.Errorf("%q: help wrote to stderr: %q", args, stderr.String())
		}
		if wantCode != 0 && stdout.Len() > 0 {
			t.Errorf("%q: a usage error wrote to stdout: %q", args, stdout.String())
		}
	}
	all := []string{"usage: lambdarec <command>", "batch run", "batch schedule", "serve ", "version "}
	f([]string{"--help"}, 0, all, nil)
	f([]string{"-h"}, 0, all, nil)
	f([]string{"help"}, 0, all, nil)
	f(nil, 2, nil, all)

	group := []string{"usage: lambdarec batch <command>", "batch run", "batch schedule"}
	f([]string{"batch", "--help"}, 0, group, nil)
	f([]string{"help", "batch"}, 0, group, nil)
	f([]string{"batch"}, 2, nil, append(group, "batch needs a command"))
	f([]string{"batch", "rn"}, 2, nil, []string{`unknown command "batch rn"`, `did you mean "batch run"?`})

	f([]string{"serv"}, 2, nil, []string{`unknown command "serv"`, `did you mean "serve"?`})
	f([]string{"zzzzzzzzzzzz"}, 2, nil, []string{`unknown command "zzzzzzzzzzzz"`})

	// A command's help says what it does before its flags.
	f([]string{"batch", "run", "--help"}, 0, []string{"usage: lambdarec batch run [flags]", "Reads the current Iceberg snapshot", "flags:", "-force"}, nil)
	f([]string{"help", "eval"}, 0, []string{"usage: lambdarec eval [flags]", "Refuses a split", "-holdout"}, nil)
	f([]string{"serve", "-h"}, 0, []string{"lambdarec.v1.RecommendationService", "-http"}, nil)
	// A flag error is a usage error, on stderr.
	f([]string{"version", "--no-such-flag"}, 2, nil, []string{"no-such-flag", "lambdarec version --help"})
	// Help needs no valid configuration.
	t.Setenv("LAMBDAREC_SERVE_ADDR", "")
	t.Setenv("LAMBDAREC_NO_SUCH_KEY", "1")
	f([]string{"serve", "--help"}, 0, []string{"usage: lambdarec serve [flags]"}, nil)
}

// Every command says what it does in its help: a description of its own
// or its summary.
func TestEveryCommandDescribed(t *testing.T) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		c := commands[n]
		if c.summary == "" {
			t.Errorf("command %q has no summary", n)
		}
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), append(strings.Fields(n), "--help"), &stdout, &stderr); code != 0 {
			t.Errorf("%s --help: exit %d: %s", n, code, stderr.String())
			continue
		}
		want := c.description
		if want == "" {
			want = c.summary
		}
		if first, _, _ := strings.Cut(want, " "); !strings.Contains(stdout.String(), first) {
			t.Errorf("%s --help does not describe it:\n%s", n, stdout.String())
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"serve", "serve", 0}, {"serv", "serve", 1}, {"batch rn", "batch run", 1}, {"kitten", "sitting", 3}, {"", "abc", 3}} {
		if d := editDistance(c.a, c.b); d != c.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", c.a, c.b, d, c.d)
		}
	}
}
