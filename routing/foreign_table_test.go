package routing_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/routing"
	"github.com/uplinkd/uplinkd/routing/routingtest"
)

// Beside a large table of another protocol, a resync copies out only the
// owned routes, foreign churn on keys uplinkd does not want wakes nothing,
// and a foreign route that takes an owned key is still seen, left alone
// and outlived.
func TestScenarioForeignTable(t *testing.T) {
	p := mustPolicy(t, twoISPs)
	want := routing.Desired(p, nil)
	k := routingtest.NewMemKernel("eth1", "eth2", "eth3")
	const nForeign = 2000
	for i := 0; i < nForeign; i++ {
		table := 254
		if i%2 == 1 {
			table = 300
		}
		if err := k.RouteAdd(&netlink.Route{Dst: foreignHost4(i), LinkIndex: k.LinkIndex("eth1"), Table: table, Protocol: 186}); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewRegistry()
	m := routing.NewMetrics(reg)
	rec, err := routing.NewReconciler(routing.Config{Netlink: k, Protocol: 212, Metrics: m, ResyncEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	ctx := context.Background()
	if _, err := rec.Apply(ctx, want); err != nil {
		t.Fatal(err)
	}

	// A restart: zero writes. Its first read also dumps the tables of
	// wanted keys once (main holds half the foreign routes), since a
	// route prepended beside an owned one while uplinkd was away is
	// found no other way; a resync after it copies nothing foreign out.
	before := k.Dumped()
	rec2, err := routing.NewReconciler(routing.Config{Netlink: k, Protocol: 212})
	if err != nil {
		t.Fatal(err)
	}
	defer rec2.Close()
	if n, err := rec2.Apply(ctx, want); err != nil || n != 0 {
		t.Errorf("restart beside %d foreign routes: %d writes (err %v), want 0", nForeign, n, err)
	}
	if got, wantN := k.Dumped()-before, 2*len(want.Routes)+nForeign/2; got != wantN {
		t.Errorf("restart copied %d routes out of the kernel, want %d (the owned ones, and the tables of wanted keys once)", got, wantN)
	}
	before = k.Dumped()
	if n, err := rec2.Apply(ctx, want); err != nil || n != 0 {
		t.Errorf("resync beside %d foreign routes: %d writes (err %v), want 0", nForeign, n, err)
	}
	if got := k.Dumped() - before; got != len(want.Routes) {
		t.Errorf("resync copied %d routes out of the kernel, want %d (the owned ones)", got, len(want.Routes))
	}

	// The filter the reconciler hands its watcher, counted.
	// MemKernel calls it inside each write, on the writer's goroutine.
	var kept, dropped atomic.Int64
	counting := func(ev routing.RouteEvent) bool {
		ok := rec.Relevant(ev)
		if ok {
			kept.Add(1)
		} else {
			dropped.Add(1)
		}
		return ok
	}
	wctx, stop := context.WithCancel(ctx)
	hints := make(chan routing.Hint, 1)
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		k.Watch(wctx, hints, routing.RouteFilter(counting))
	}()
	eventually(t, "watcher registered", 5*time.Second, func() (bool, string) {
		return k.Watchers() == 1, "no watcher"
	})
	for i := 0; i < nForeign; i++ {
		table := 254
		if i%2 == 1 {
			table = 300
		}
		if err := k.RouteReplace(&netlink.Route{Dst: foreignHost4(i), LinkIndex: k.LinkIndex("eth2"), Table: table, Protocol: 186}); err != nil {
			t.Fatal(err)
		}
	}
	if kept.Load() != 0 || dropped.Load() != nForeign {
		t.Errorf("foreign churn on keys uplinkd does not want: %d kept, %d dropped; want 0 kept, %d dropped", kept.Load(), dropped.Load(), nForeign)
	}
	stop()
	<-wdone

	// Run: a foreign default takes the key of the owned one in table 201.
	defer startRun(t, ctx, rec)()
	rec.Set(want)
	golden := routing.Format(want)
	owned := func() (bool, string) {
		s, err := rec.ReadOwned(routing.State{})
		if err != nil {
			return false, err.Error()
		}
		diff := cmp.Diff(golden, routing.Format(s))
		return diff == "", "owned state (-want +got):\n" + diff
	}
	eventually(t, "converged", 5*time.Second, owned)
	// The state was already applied: wait for Run's watcher, or the
	// takeover below could come before anyone listens.
	eventually(t, "Run watching", 5*time.Second, func() (bool, string) {
		return k.Watchers() == 1, "no watcher"
	})
	events := func() float64 { return series(t, reg, "uplinkd_resyncs_total", "reason", routing.ReasonEvent) }
	// The watcher hints once subscribed; that resync first.
	eventually(t, "resync after subscribing", 5*time.Second, func() (bool, string) {
		return events() > 0, "none"
	})
	resyncs := events()
	writes := rec.Writes()
	bgpDefault := &netlink.Route{Family: unix.AF_INET, Table: 201, Gw: net.ParseIP("198.18.2.1"), LinkIndex: k.LinkIndex("eth2"), Protocol: 186}
	if err := k.RouteReplace(bgpDefault); err != nil {
		t.Fatal(err)
	}
	eventually(t, "resync after the foreign takeover", 5*time.Second, func() (bool, string) {
		return events() > resyncs, "no resync"
	})
	if rec.Writes() != writes {
		t.Errorf("the reconciler wrote %d times over a foreign route on its key", rec.Writes()-writes)
	}
	if s := routing.Format(k.State()); !strings.Contains(s, "default via 198.18.2.1 dev eth2 table 201 proto 186") {
		t.Errorf("foreign default of table 201 not left alone:\n%s", s)
	}
	ops, err := func() ([]routing.Op, error) {
		have, err := rec.ReadOwned(want)
		return routing.Plan(want, have), err
	}()
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 1 || ops[0].Kind != routing.OpConflict {
		t.Errorf("plan with the foreign default: %v, want one conflict", ops)
	}
	// It goes away: uplinkd's default comes back.
	if err := k.RouteDel(&netlink.Route{Family: unix.AF_INET, Table: 201, Protocol: 186}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "owned default back in table 201", 5*time.Second, owned)
}

// foreignHost4 is the i-th of 65,536 distinct /32s in 198.19.0.0/16.
func foreignHost4(i int) *net.IPNet {
	return &net.IPNet{IP: net.IPv4(198, 19, byte(i>>8), byte(i)).To4(), Mask: net.CIDRMask(32, 32)}
}
