package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
)

// recordingConntrack answers every flush with n deleted entries and
// records the scopes asked for.
type recordingConntrack struct {
	mu     sync.Mutex
	calls  []int // family of each delete
	n      int
	called chan struct{}
	during func() // called inside each delete: what the kernel holds then
}

func (r *recordingConntrack) InterfaceAddrs(string, int) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr("198.18.61.2")}, nil
}

func (r *recordingConntrack) DeleteConntrack(family int, match func(routing.ConntrackEntry) bool) (int, error) {
	r.mu.Lock()
	r.calls = append(r.calls, family)
	during := r.during
	r.mu.Unlock()
	if during != nil {
		during()
	}
	r.called <- struct{}{}
	return r.n, nil
}

// lockedBuffer is a log sink the test may read while the flusher writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func TestConntrackFlusher(t *testing.T) {
	g1 := &policy.Gateway{Name: "g1", Address: netip.MustParseAddr("198.18.61.1"), Interface: "up1",
		Conntrack: policy.Conntrack{Flush: policy.FlushOnDown, SNAT: []netip.Addr{netip.MustParseAddr("198.18.61.2")}}}
	g2 := &policy.Gateway{Name: "g2", Address: netip.MustParseAddr("198.18.62.1"), Interface: "up2",
		Conntrack: policy.Conntrack{Flush: policy.FlushNever}}
	route := func(gws ...*policy.Gateway) routing.State {
		r := routing.Route{Family: 4, Table: 254, Dst: netip.MustParsePrefix("0.0.0.0/0")}
		for _, g := range gws {
			r.Nexthops = append(r.Nexthops, routing.Nexthop{Gateway: g.Address, Dev: g.Interface, Weight: 1})
		}
		return routing.State{Routes: []routing.Route{r}}
	}
	var logs lockedBuffer
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, BuildInfo{})
	ct := &recordingConntrack{n: 9, called: make(chan struct{}, 8)}
	f := newConntrackFlusher(ct, slog.New(slog.NewTextHandler(&logs, nil)), m)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()

	noFlush := func(why string) {
		t.Helper()
		select {
		case <-ct.called:
			t.Fatalf("flushed %s", why)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// g2 never flushes; g1 down while its route is still installed waits.
	f.want(g2, true, false)
	f.want(g1, true, false)
	f.applied(route(g1, g2))
	noFlush("while g1 still carried a route (routes first, then the flush)")
	// The route without g1 is applied: now the flush runs, once.
	f.applied(route(g2))
	select {
	case <-ct.called:
	case <-time.After(5 * time.Second):
		t.Fatal("no flush after g1 left its routes")
	}
	f.applied(route(g2))
	noFlush("twice for one transition")
	// Down then up before any apply: nothing left to flush (on_down only).
	f.want(g1, true, false)
	f.want(g1, false, true)
	f.applied(route(g1, g2))
	f.applied(route(g2))
	noFlush("for a down transition that was undone")

	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "flushed=9") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "gateway=g1") || !strings.Contains(logs.String(), "flushed=9") || !strings.Contains(logs.String(), "match=snat") {
		t.Errorf("log lacks the gateway, count or selector:\n%s", logs.String())
	}
	if got := testutil.ToFloat64(m.ctFlushed.WithLabelValues("g1", "down")); got != 9 {
		t.Errorf("uplinkd_conntrack_flushed_entries_total{gateway=g1,event=down} = %v, want 9", got)
	}
	f.forget("g1")
	if n := testutil.CollectAndCount(m.ctFlushed); n != 0 {
		t.Errorf("%d series left after g1 left the policy", n)
	}
}

// TestCoreFlushesConntrackAfterRoutes runs the loop over the real
// reconciler: isp1 goes down, its conntrack entries are flushed once, and
// at that moment the kernel already routes without it.
func TestCoreFlushesConntrackAfterRoutes(t *testing.T) {
	p := mustParse(t, `
[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"
flush_conntrack = "on_down"
snat_addresses = ["198.18.1.2"]
[gateway.isp2]
address = "198.18.2.1"
interface = "eth2"
[group.wan]
gateways = ["isp1", "isp2"]
`)
	h := newHarness(t, p)
	var atFlush string
	h.ct.mu.Lock()
	h.ct.during = func() { atFlush = h.kernelDump() }
	h.ct.mu.Unlock()
	h.det.send("isp1", detector.Unknown, detector.Up, "neighbour reachable")
	h.det.send("isp2", detector.Unknown, detector.Up, "neighbour reachable")
	h.det.send("isp1", detector.Up, detector.Down, "3 probes lost")
	select {
	case <-h.ct.called:
	case <-time.After(10 * time.Second):
		t.Fatalf("no conntrack flush after isp1 went down; kernel:\n%s", h.kernelDump())
	}
	if strings.Contains(atFlush, "198.18.1.1") || !strings.Contains(atFlush, "default via 198.18.2.1 dev eth2") {
		t.Errorf("at the flush the kernel held:\n%s\nwant the default without isp1 (routes first, then the flush)", atFlush)
	}
	select {
	case <-h.ct.called:
		t.Error("a second flush for one transition")
	case <-time.After(100 * time.Millisecond):
	}
	h.waitFor("the flush counted", func() bool {
		return testutil.ToFloat64(h.core.metrics.ctFlushed.WithLabelValues("isp1", "down")) == 7
	})
}
