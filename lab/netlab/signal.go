package netlab

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// HandleSignals makes the lab's teardown survive Ctrl-C. It returns a
// context cancelled on the first SIGINT, SIGTERM or SIGHUP, so the program
// can stop its traffic, print what it has and Close the lab itself. If the
// program has not closed the lab within grace of that signal, or a second
// signal arrives, the lab is closed from the handler and the process exits
// with status 130: namespaces must not outlive an impatient user.
//
// stop ends the handling (and releases the goroutine); call it after Close.
func (l *Lab) HandleSignals(parent context.Context, grace time.Duration) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var deadline <-chan time.Time
		for {
			select {
			case <-quit:
				return
			case sig := <-sigc:
				if deadline == nil {
					fmt.Fprintf(os.Stderr, "\n%v: stopping and tearing the lab down (again to force)\n", sig)
					cancel()
					t := time.NewTimer(grace)
					defer t.Stop()
					deadline = t.C
					continue
				}
				l.forceClose()
			case <-deadline:
				l.forceClose()
			}
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			signal.Stop(sigc)
			close(quit)
			wg.Wait()
			cancel()
		})
	}
}

func (l *Lab) forceClose() {
	if err := l.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "tearing down lab %s: %v\n", l.Prefix, err)
	}
	os.Exit(130)
}
