package daemon

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/internal/hooks"
	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
	"github.com/uplinkd/uplinkd/routing/routingtest"
)

// manyGateways is a policy with n gateways in one multipath group.
func manyGateways(b *testing.B, n int) (*policy.Policy, []string) {
	var sb strings.Builder
	var names, links []string
	for i := range n {
		name := fmt.Sprintf("gw%d", i)
		link := fmt.Sprintf("eth%d", i)
		names = append(names, fmt.Sprintf("%q", name))
		links = append(links, link)
		fmt.Fprintf(&sb, "[gateway.%s]\naddress = \"198.18.%d.%d\"\ninterface = %q\n", name, 1+i/250, 1+i%250, link)
	}
	fmt.Fprintf(&sb, "[group.wan]\ngateways = [%s]\n", strings.Join(names, ", "))
	p, err := policy.Parse("bench.toml", []byte(sb.String()), policy.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return p, links
}

// BenchmarkTransitionToRoute measures one gateway failure or recovery from
// the detector's transition to the route written in the (in-memory) kernel,
// through the loop and the real reconciler: the daemon's own share of the
// failover time.
func BenchmarkTransitionToRoute(b *testing.B) {
	for _, n := range []int{2, 64} {
		b.Run(fmt.Sprintf("gateways=%d", n), func(b *testing.B) {
			p, links := manyGateways(b, n)
			kernel := routingtest.NewMemKernel(links...)
			rec, err := routing.NewReconciler(routing.Config{Netlink: kernel, Protocol: 212, Logger: discard()})
			if err != nil {
				b.Fatal(err)
			}
			det := newFakeDetector()
			c, err := NewCore(CoreConfig{Policy: p, Detector: det, Routes: rec})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := rec.Apply(context.Background(), c.Desired()); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); rec.Run(ctx) }()
			go func() { defer wg.Done(); c.Loop(ctx) }()
			defer func() { cancel(); wg.Wait(); rec.Close() }()
			time.Sleep(50 * time.Millisecond)
			b.ResetTimer()
			for i := range b.N {
				before := rec.Writes()
				from, to := detector.Up, detector.Down
				if i%2 == 1 {
					from, to = detector.Down, detector.Up
				}
				det.trans <- detector.Transition{Gateway: "gw0", From: from, To: to}
				for rec.Writes() == before {
					time.Sleep(10 * time.Microsecond)
				}
			}
		})
	}
}

// BenchmarkStatus measures building and encoding /status.
func BenchmarkStatus(b *testing.B) {
	p, links := manyGateways(b, 64)
	kernel := routingtest.NewMemKernel(links...)
	rec, _ := routing.NewReconciler(routing.Config{Netlink: kernel, Protocol: 212, Logger: discard()})
	c, err := NewCore(CoreConfig{Policy: p, Detector: newFakeDetector(), Routes: rec})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := rec.Apply(context.Background(), c.Desired()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := statusJSON(c.Status()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHookFire measures what the loop pays to queue a hook event.
func BenchmarkHookFire(b *testing.B) {
	r := hooks.New(hooks.Config{QueueLen: 1 << 20})
	defer r.Close()
	// A hook that matches but whose runs are not what is measured: the
	// queue is large enough that nothing is dropped.
	r.SetHooks([]*policy.Hook{{Name: "h", Command: []string{"/bin/true"}, Timeout: time.Second, Events: []string{"gateway_down"}, Objects: []string{"nomatch"}}})
	ev := hooks.Event{Name: "gateway_down", Gateway: "isp1", Group: "wan"}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		r.Fire(ev)
	}
}
