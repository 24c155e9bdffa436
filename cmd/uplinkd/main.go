package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one subcommand. run returns the process exit code.
type command struct {
	name  string
	short string
	run   func(args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

// Exit codes shared by subcommands.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure, or "not up" for status --check
	exitUsage   = 2 // bad flags or an invalid policy
)

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
	fmt.Fprintf(w, "\nRun 'uplinkd COMMAND --help' for the flags of a command.\n")
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
// every flag with its default.
func newFlags(name, synopsis, long string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("uplinkd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: uplinkd %s %s\n\n%s\n", name, synopsis, long)
		var n int
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(fs.Output(), "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags returns -1 to continue, or an exit code.
func parseFlags(fs *flag.FlagSet, args []string) int {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return exitOK
		}
		return exitUsage
	}
	return -1
}
