package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one subcommand. run returns the process exit code.
type command struct {
	name  string
	short string
	run   func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

// Exit codes shared by subcommands, documented in docs/operations.md
// ("Exit status"). Scripts tell a bad policy from an absent daemon by them.
const (
	exitOK          = 0
	exitFailure     = 1 // runtime failure, a refused reload, or "not up" for status --check
	exitUsage       = 2 // bad flags or arguments, an unknown NAME
	exitInvalid     = 3 // the policy is invalid (or cannot be read)
	exitUnreachable = 4 // no daemon answered on the socket or address
)

// defaultConfig is where the packaged unit and the docs put the policy.
const defaultConfig = "/etc/uplinkd/uplinkd.toml"

// exitCodesHelp is appended to every command's --help.
const exitCodesHelp = `Exit status: 0 success, 1 failure (for status --check: not up), 2 usage
error, 3 invalid policy, 4 daemon unreachable.`

func usage(w io.Writer) {
	fmt.Fprintf(w, "uplinkd detects dead gateways and keeps policy and multipath routes pointed at live ones.\n\n")
	fmt.Fprintf(w, "Usage:\n  uplinkd COMMAND [flags]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].short)
	}
	fmt.Fprintf(w, "\nRun 'uplinkd COMMAND --help' for the flags of a command. Flags may come\nbefore or after the arguments; '--' ends them.\n\n%s\n", exitCodesHelp)
}

func main() { os.Exit(mainArgs(os.Args[1:], os.Stdout, os.Stderr)) }

func mainArgs(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	case "-version", "--version":
		args[0] = "version"
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "uplinkd: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return c.run(args[1:], stdout, stderr)
}

// newFlags makes a FlagSet whose --help prints the command's purpose and
// every flag with its default, spelt --flag as the docs spell them (the
// flag package accepts one dash or two).
func newFlags(name, synopsis, long string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("uplinkd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: uplinkd %s %s\n\n%s\n", name, synopsis, long)
		var n int
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(fs.Output(), "\nFlags:\n")
			printFlags(fs)
		}
		fmt.Fprintf(fs.Output(), "\n%s\n", exitCodesHelp)
	}
	return fs
}

// printFlags is flag.PrintDefaults with "--name".
func printFlags(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if arg != "" {
			line += " " + arg
		}
		line += "\n    \t" + strings.ReplaceAll(usage, "\n", "\n    \t")
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "0s" {
			line += fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintln(fs.Output(), line)
	})
}

// parseArgs parses flags wherever they are among the arguments, so that
// `check FILE -q` works as `check -q FILE` does; after "--" everything is
// an argument. It returns the arguments, and -1 to continue or an exit
// code.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, int) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return nil, exitOK
			}
			return nil, exitUsage
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, -1
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), -1
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
