package main

// Help of the command line: the command list, group help ("lambdarec batch"
// lists batch run, batch schedule, …), each command's --help (what it does,
// then its flags), and the nearest name for a mistyped command. Commands
// are looked up in the registry that each command file fills with register,
// so a new command shows up here without changes.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// wantsHelp reports whether the flags args ask for help (-h, -help, --help
// before a "--").
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// lookup finds the command args start with: one word ("serve") or two
// ("batch run"). It returns the name, the remaining arguments, and whether a
// command has that name. When none has, name is the first word.
func lookup(args []string) (name string, rest []string, ok bool) {
	name, rest = args[0], args[1:]
	if _, ok := commands[name]; ok {
		return name, rest, true
	}
	if len(rest) > 0 {
		if _, ok := commands[name+" "+rest[0]]; ok {
			return name + " " + rest[0], rest[1:], true
		}
	}
	return name, rest, false
}

// isGroup reports whether some command's name starts with the word group.
func isGroup(group string) bool {
	for n := range commands {
		if strings.HasPrefix(n, group+" ") {
			return true
		}
	}
	return false
}

// notACommand answers a first word that names no command: a group's list of
// commands (exit 0 when help was asked for, else 2), or the nearest name.
func notACommand(name string, args []string, stdout, stderr io.Writer) int {
	if !isGroup(name) {
		unknown(stderr, name)
		return 2
	}
	switch {
	case len(args) > 0 && isHelp(args[0]):
		usage(stdout, name)
		return 0
	case len(args) == 0:
		fmt.Fprintf(stderr, "lambdarec: %s needs a command\n\n", name)
	default:
		unknown(stderr, name+" "+args[0])
		fmt.Fprintln(stderr)
	}
	usage(stderr, name)
	return 2
}

// help answers "lambdarec help [command]".
func help(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stdout, "")
		return 0
	}
	name, _, ok := lookup(args)
	if !ok {
		if isGroup(name) && len(args) == 1 {
			usage(stdout, name)
			return 0
		}
		unknown(stderr, strings.Join(args, " "))
		return 2
	}
	return run(ctx, []string{name, "--help"}, stdout, stderr)
}

// usage lists the commands, or those of group when it is not empty.
func usage(w io.Writer, group string) {
	if group == "" {
		fmt.Fprintln(w, "lambdarec runs every role of the lambdarec recommendation platform.\n\nusage: lambdarec <command> [flags]\n\ncommands:")
	} else {
		fmt.Fprintf(w, "usage: lambdarec %s <command> [flags]\n\ncommands:\n", group)
	}
	names := make([]string, 0, len(commands))
	for n := range commands {
		if group == "" || strings.HasPrefix(n, group+" ") {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-16s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nrun 'lambdarec <command> --help' for what a command does and its flags")
}

// commandHelp writes what command name does, then its flags.
func commandHelp(w io.Writer, name string, c command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: lambdarec %s [flags]\n\n", name)
	desc := c.description
	if desc == "" {
		desc = c.summary
	}
	if desc != "" {
		fmt.Fprintf(w, "%s\n\n", wrap(strings.TrimSpace(desc), 78))
	}
	fmt.Fprintln(w, "flags:")
	out := fs.Output()
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(out)
}

// unknown writes that name is no command, with the nearest command name.
func unknown(w io.Writer, name string) {
	fmt.Fprintf(w, "lambdarec: unknown command %q", name)
	if n := nearest(name); n != "" {
		fmt.Fprintf(w, "; did you mean %q?", n)
	}
	fmt.Fprintln(w, "\nrun 'lambdarec --help' for the list of commands")
}

// nearest is the command or group name closest to name by edit distance,
// or "" when none is close (more than half of name would change).
func nearest(name string) string {
	cands := make([]string, 0, len(commands)+4)
	for n := range commands {
		cands = append(cands, n)
		if g, _, ok := strings.Cut(n, " "); ok {
			cands = append(cands, g)
		}
	}
	slices.Sort(cands)
	best, bestD := "", len(name)/2+1
	for _, c := range cands {
		if d := editDistance(name, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, by bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// wrap breaks text into lines of at most width bytes at spaces (a longer
// word stays whole).
func wrap(text string, width int) string {
	var b strings.Builder
	line := 0
	for i, word := range strings.Fields(text) {
		if i > 0 {
			if line+1+len(word) > width {
				b.WriteByte('\n')
				line = 0
			} else {
				b.WriteByte(' ')
				line++
			}
		}
		b.WriteString(word)
		line += len(word)
	}
	return b.String()
}
