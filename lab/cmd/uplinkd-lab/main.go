// Command uplinkd-lab is the namespace lab of `make demo` and `make bench`:
// a host with two uplinks, two gateways and a server, all in network
// namespaces of their own, where gateways fail on demand while traffic
// flows and uplinkd (or the kernel alone) has to cope.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func usage(w io.Writer) {
	fmt.Fprint(w, `uplinkd-lab builds a namespace lab (host, gw1, gw2, srv) and shows or measures
gateway failover in it. It touches nothing outside its own namespaces.

Usage:
  uplinkd-lab demo  [flags]   a gateway dies silently; watch uplinkd move traffic and bring it back
  uplinkd-lab bench [flags]   the fault matrix, uplinkd against the kernel alone; table, CSV and JSON
  uplinkd-lab echo  [flags]   the lab's UDP echo / TCP discard responder (run inside the server namespace)

Run 'uplinkd-lab COMMAND -h' for the flags of a command.
`)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "demo":
		return runDemo(args[1:], stdout, stderr)
	case "bench":
		return runBench(args[1:], stdout, stderr)
	case "echo":
		return runEcho(args[1:], stderr)
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "uplinkd-lab: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("uplinkd-lab "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: uplinkd-lab %s [flags]\n\n%s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// sleepCtx waits d or until ctx ends; false means ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// poll calls cond every 50 ms until it is true, ctx ends or timeout passes.
func poll(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}
