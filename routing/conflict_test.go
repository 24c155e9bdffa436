package routing_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/uplinkd/uplinkd/routing"
	"github.com/uplinkd/uplinkd/routing/routingtest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Scenario tests of issue 11.5 and 11.6 through MemKernel, which keys
// routes as the kernel does: a foreign route sharing a key with uplinkd's
// is never written over, wiped or adopted, and a nexthop on a vanished
// interface is never written.

func newConflictReconciler(t *testing.T, k *routingtest.MemKernel) (*routing.Reconciler, prometheus.Gatherer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := routing.NewMetrics(reg)
	rec, err := routing.NewReconciler(routing.Config{Netlink: k, Protocol: 212, Metrics: m, ResyncEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() })
	return rec, reg
}

func foreignDefault(t *testing.T, k *routingtest.MemKernel, family int, gw, dev string) *netlink.Route {
	t.Helper()
	r := &netlink.Route{Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC,
		Gw: net.ParseIP(gw), LinkIndex: k.LinkIndex(dev), Type: unix.RTN_UNICAST}
	if family == 6 {
		r.Family, r.Priority = unix.AF_INET6, 1024 // the kernel's IPv6 default metric
	}
	return r
}

func linesWith(s, sub string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.Contains(l, sub) {
			b.WriteString(l)
		}
	}
	return b.String()
}

// IPv4: `ip route prepend default via 198.18.3.1 proto static` beside
// uplinkd's default in main. The kernel routes by the first of the two, so
// uplinkd's replace would overwrite the foreign route. Instead the key is
// a conflict: no write, an Error, the gauge, Conflicts, and a retry on
// every resync until the foreign route goes.
func TestScenarioIPv4PrependConflict(t *testing.T) {
	p := mustPolicy(t, twoISPs)
	k := routingtest.NewMemKernel("eth1", "eth2", "eth3")
	rec, _ := newConflictReconciler(t, k)
	ctx := context.Background()
	if _, err := rec.Apply(ctx, routing.Desired(p, nil)); err != nil {
		t.Fatal(err)
	}
	if err := k.RoutePrepend(foreignDefault(t, k, 4, "198.18.3.1", "eth3")); err != nil {
		t.Fatalf("prepending the foreign default: %v", err)
	}
	foreign := "default via 198.18.3.1 dev eth3 table main proto 4\n"
	ours := "default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 3 nexthop via 198.18.2.1 dev eth2 weight 1\n"
	if d := cmp.Diff(foreign+ours, linesWith(routing.Format(k.State()), "table main")); d != "" {
		t.Fatalf("main after the prepend (-want +got):\n%s", d)
	}

	// uplinkd restarts (the prepend was made while it was away: only a
	// read finds it), and isp1 is down: the group's route would change,
	// but its key is shared with a foreign route.
	rec, reg := newConflictReconciler(t, k)
	writes := rec.Writes()
	_, err := rec.Apply(ctx, routing.Desired(p, routing.Snapshot{"isp1": routing.Down}))
	if err == nil || !strings.Contains(err.Error(), "foreign route") {
		t.Errorf("Apply over a foreign route on the key: err = %v, want a conflict", err)
	}
	if d := cmp.Diff(foreign+ours, linesWith(routing.Format(k.State()), "table main")); d != "" {
		t.Errorf("main after the health change (-want +got):\n%s", d)
	}
	if got := rec.Writes() - writes; got != 1 {
		t.Errorf("%d writes, want 1 (table 201's failover only)", got)
	}
	cs := rec.Conflicts()
	if len(cs) != 1 || cs[0].Old == nil || cs[0].Old.Protocol != unix.RTPROT_STATIC {
		t.Fatalf("Conflicts() = %v, want the main default held by proto 4", cs)
	}
	if got := series(t, reg, "uplinkd_route_conflicts"); got != 1 {
		t.Errorf("uplinkd_route_conflicts = %v, want 1", got)
	}

	// Once the foreign route is gone, the next resync installs ours.
	if err := k.RouteDel(&netlink.Route{Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC}); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Apply(ctx, routing.Desired(p, routing.Snapshot{"isp1": routing.Down})); err != nil {
		t.Fatalf("Apply after the foreign route left: %v", err)
	}
	if d := cmp.Diff("default via 198.18.2.1 dev eth2 table main proto 212\n", linesWith(routing.Format(k.State()), "table main")); d != "" {
		t.Errorf("main after the foreign route left (-want +got):\n%s", d)
	}
	if cs := rec.Conflicts(); len(cs) != 0 {
		t.Errorf("Conflicts() = %v after the clash ended", cs)
	}
	if got := series(t, reg, "uplinkd_route_conflicts"); got != 0 {
		t.Errorf("uplinkd_route_conflicts = %v, want 0", got)
	}
}

// IPv4 under Run: the prepend arrives as an event, and a conflict found
// on it is retried on the periodic resync, without writes, until it ends.
func TestScenarioIPv4ConflictRetriedOnResync(t *testing.T) {
	p := mustPolicy(t, twoISPs)
	k := routingtest.NewMemKernel("eth1", "eth2", "eth3")
	reg := prometheus.NewRegistry()
	m := routing.NewMetrics(reg)
	rec, err := routing.NewReconciler(routing.Config{Netlink: k, Protocol: 212, Metrics: m, ResyncEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	defer startRun(t, context.Background(), rec)()
	rec.Set(routing.Desired(p, nil))
	eventually(t, "initial apply", 5*time.Second, func() (bool, string) { return len(rec.Installed().Routes) == 3, routing.Format(k.State()) })
	if err := k.RoutePrepend(foreignDefault(t, k, 4, "198.18.3.1", "eth3")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "conflict reported", 5*time.Second, func() (bool, string) {
		return series(t, reg, "uplinkd_route_conflicts") == 1, routing.Format(k.State())
	})
	rec.Set(routing.Desired(p, routing.Snapshot{"isp1": routing.Down}))
	resyncs := func() float64 { return series(t, reg, "uplinkd_resyncs_total", "reason", routing.ReasonTimer) }
	before := resyncs()
	eventually(t, "resyncs while the conflict lasts", 5*time.Second, func() (bool, string) { return resyncs() >= before+3, "" })
	if got := linesWith(routing.Format(k.State()), "table main"); !strings.HasPrefix(got, "default via 198.18.3.1 dev eth3 table main proto 4\n") {
		t.Errorf("foreign route changed:\n%s", got)
	}
	if err := k.RouteDel(&netlink.Route{Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "own route installed once the key is free", 5*time.Second, dumpHas(k, "default via 198.18.2.1 dev eth2 table main proto 212\n"))
	eventually(t, "conflict cleared", 5*time.Second, func() (bool, string) { return series(t, reg, "uplinkd_route_conflicts") == 0, "" })
}

func dumpHas(k *routingtest.MemKernel, line string) func() (bool, string) {
	return func() (bool, string) {
		got := routing.Format(k.State())
		return strings.Contains(got, line), got
	}
}

// IPv6: `ip -6 route append default via 2001:db8:3::1 proto static`
// merges a nexthop into uplinkd's multipath default; a dump shows one
// route of protocol 212. uplinkd must not read it as its own, and must not
// wipe it with a replace or a delete.
func TestScenarioIPv6AppendMerge(t *testing.T) {
	p := mustPolicy(t, dualStack)
	k := routingtest.NewMemKernel("eth1", "eth2", "eth3")
	rec, reg := newConflictReconciler(t, k)
	ctx := context.Background()
	if _, err := rec.Apply(ctx, routing.Desired(p, nil)); err != nil {
		t.Fatal(err)
	}
	if err := k.RouteAppend(foreignDefault(t, k, 6, "2001:db8:3::1", "eth3")); err != nil {
		t.Fatalf("appending the foreign nexthop: %v", err)
	}
	merged := "-6 default table main proto 212 metric 1024 nexthop via 2001:db8:1::1 dev eth1 weight 2 nexthop via fe80::1 dev eth2 weight 1 nexthop via 2001:db8:3::1 dev eth3 weight 1\n"
	got := func() string { return linesWith(routing.Format(k.State()), "-6 ") }
	if d := cmp.Diff(merged, got()); d != "" {
		t.Fatalf("main after the append (-want +got):\n%s", d)
	}
	for _, step := range []struct {
		name string
		h    routing.Snapshot
	}{
		{"v6a down: a replace would wipe the foreign nexthop", routing.Snapshot{"v6a": routing.Down}},
		{"everything down: a blackhole replace would too", routing.Snapshot{"v6a": routing.Down, "v6b": routing.Down}},
	} {
		_, err := rec.Apply(ctx, routing.Desired(p, step.h))
		if err == nil || !strings.Contains(err.Error(), "foreign") {
			t.Errorf("%s: err = %v, want a conflict", step.name, err)
		}
		if d := cmp.Diff(merged, got()); d != "" {
			t.Errorf("%s: IPv6 default changed (-want +got):\n%s", step.name, d)
		}
		if c := series(t, reg, "uplinkd_route_conflicts"); c != 1 {
			t.Errorf("%s: uplinkd_route_conflicts = %v, want 1", step.name, c)
		}
	}
	// Withdrawing would delete the route with every sibling: also refused.
	if err := rec.Withdraw(ctx); err == nil {
		t.Errorf("Withdraw over a merged foreign nexthop succeeded")
	}
	if d := cmp.Diff(merged, got()); d != "" {
		t.Errorf("after withdraw (-want +got):\n%s", d)
	}
	// The foreign program takes its nexthop back: uplinkd resumes.
	if err := k.RouteDel(&netlink.Route{Family: unix.AF_INET6, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC, Gw: net.ParseIP("2001:db8:3::1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Apply(ctx, routing.Desired(p, routing.Snapshot{"v6a": routing.Down})); err != nil {
		t.Fatalf("Apply after the foreign nexthop left: %v", err)
	}
	if d := cmp.Diff("-6 default via fe80::1 dev eth2 table main proto 212 metric 1024\n", got()); d != "" {
		t.Errorf("after the foreign nexthop left (-want +got):\n%s", d)
	}
}

// Issue 11.6 and issue 19: every gateway down with last_resort "keep",
// then eth2's member becomes impossible: the interface is removed (the
// kernel drops the multipath default with it), or its lease is released
// and 198.18.2.1 is no longer on-link (the kernel would refuse the route,
// ENETUNREACH). uplinkd must write the members that can still exist, not
// retry the whole route and leave the host with none; when eth2's member
// is possible again the whole group is written again.
func TestScenarioKeepWithImpossibleMember(t *testing.T) {
	p := mustPolicy(t, strings.Replace(twoISPs, `last_resort = "unreachable"`, `last_resort = "keep"`, 1))
	for _, tc := range []struct {
		name         string
		cut, restore func(k *routingtest.MemKernel)
	}{
		{"interface removed", func(k *routingtest.MemKernel) { k.DelLink("eth2") }, func(k *routingtest.MemKernel) { k.AddLink("eth2") }},
		{"lease released, a new one elsewhere", func(k *routingtest.MemKernel) { k.SetAddrs("eth2", netip.MustParsePrefix("198.18.200.2/24")) },
			func(k *routingtest.MemKernel) { k.SetAddrs("eth2", netip.MustParsePrefix("198.18.2.2/24")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := routingtest.NewMemKernel("eth1", "eth2", "eth3")
			rec, _ := newConflictReconciler(t, k)
			ctx := context.Background()
			allDown := routing.Snapshot{"isp1": routing.Down, "isp2": routing.Down, "backup": routing.Down}
			if _, err := rec.Apply(ctx, routing.Desired(p, allDown)); err != nil {
				t.Fatal(err)
			}
			tc.cut(k)
			if _, err := rec.Apply(ctx, routing.Desired(p, allDown)); err != nil {
				t.Errorf("Apply with eth2's member impossible: %v", err)
			}
			want := dump(`
				default via 198.18.1.1 dev eth1 table 201 proto 212 src 198.18.1.2
				default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 3 nexthop via 198.18.3.1 dev eth3 weight 1`)
			if d := cmp.Diff(want, linesWith(routing.Format(k.State()), "default")); d != "" {
				t.Errorf("defaults with eth2's member impossible (-want +got):\n%s", d)
			}
			tc.restore(k)
			if _, err := rec.Apply(ctx, routing.Desired(p, allDown)); err != nil {
				t.Fatal(err)
			}
			if got := linesWith(routing.Format(k.State()), "table main"); !strings.Contains(got, "via 198.18.2.1 dev eth2") {
				t.Errorf("eth2's member possible again, but main is %q", got)
			}
		})
	}
}
