package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/uplinkd/uplinkd/lab/netlab"
)

// runEcho is the responder the lab starts in the server namespace with
// `ip netns exec`. It refuses to run in the root namespace's address space
// by binding only what it is told (the wildcard of the namespace it is in)
// and exits by itself after --max, so a lost lab cannot leave it running.
func runEcho(args []string, stderr io.Writer) int {
	fs := newFlags("echo", "UDP echo (port 7) and TCP discard (ports 7, 9) responder for the lab's traffic.", stderr)
	addr := fs.String("addr", "0.0.0.0", "address to listen on")
	maxLife := fs.Duration("max", 30*time.Minute, "exit after this long whatever happens")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	a, err := netip.ParseAddr(*addr)
	if err != nil {
		fmt.Fprintf(stderr, "uplinkd-lab echo: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *maxLife)
	defer cancel()
	// The lab waits for this line before sending traffic.
	ready := func() { fmt.Fprintln(os.Stdout, "ready") }
	if err := netlab.ServeEcho(ctx, a, ready); err != nil {
		fmt.Fprintf(stderr, "uplinkd-lab echo: %v\n", err)
		return 1
	}
	return 0
}
