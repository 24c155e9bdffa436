package routing

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/policy"
)

// mustPolicy parses a policy written inline.
func mustPolicy(t testing.TB, src string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse("test.toml", []byte(src), policy.Options{})
	if err != nil {
		t.Fatalf("parsing policy: %v\n%s", err, src)
	}
	return p
}

// dump is a golden literal with its indentation and blank lines removed.
func dump(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l != "" {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

const twoISPs = `
[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"
weight = 3
degraded_weight = 1
sources = ["198.18.1.2"]
table = 201
on_down = "failover"

[gateway.isp2]
address = "198.18.2.1"
interface = "eth2"
sources = ["198.18.2.2"]
table = 202

[gateway.backup]
address = "198.18.3.1"
interface = "eth3"
tier = 2

[group.wan]
gateways = ["isp1", "isp2", "backup"]
last_resort = "unreachable"
`

func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }

// startRun runs rec.Run in the background until the returned stop is
// called (defer it), which cancels Run and fails the test if Run returns
// an error or does not return within 10 s.
func startRun(t testing.TB, parent context.Context, rec *Reconciler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(parent)
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// eventually polls cond every 20 ms until it holds or the deadline passes.
func eventually(t testing.TB, what string, deadline time.Duration, cond func() (bool, string)) {
	t.Helper()
	end := time.Now().Add(deadline)
	var last string
	for {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		if time.Now().After(end) {
			t.Fatalf("%s: not true after %v: %s", what, deadline, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// silentWatcher never hints, as when events were lost.
type silentWatcher struct{}

func (silentWatcher) Watch(ctx context.Context, _ chan<- Hint, _ Interest) error {
	<-ctx.Done()
	return nil
}
