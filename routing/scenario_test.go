package routing_test

import (
	"context"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/uplinkd/uplinkd/routing"
	"github.com/uplinkd/uplinkd/routing/routingtest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const dualStack = twoISPs + `
[gateway.v6a]
address = "2001:db8:1::1"
interface = "eth1"
weight = 2

[gateway.v6b]
address = "fe80::1"
interface = "eth2"

[group.wan6]
gateways = ["v6a", "v6b"]
last_resort = "blackhole"

[rule.marked]
fwmark = "0x2/0xff"
gateway = "isp2"
priority = 1050
`

// foreignRoute is somebody else's route in a table uplinkd manages.
func foreignRoute(t *testing.T, k *routingtest.MemKernel) {
	t.Helper()
	_, dst, _ := net.ParseCIDR("198.18.99.0/24")
	err := k.RouteAdd(&netlink.Route{Family: unix.AF_INET, Dst: dst, Table: 201, Protocol: unix.RTPROT_STATIC,
		Gw: net.ParseIP("198.18.2.1"), LinkIndex: k.LinkIndex("eth2")})
	if err != nil {
		t.Fatalf("adding foreign route: %v", err)
	}
}

// owned201 and ownedRule1000 are uplinkd's default of table 201 and the
// source rule to it, as another program names them to `ip route del` and
// `ip rule del`.
func owned201(k *routingtest.MemKernel) *netlink.Route {
	return &netlink.Route{Family: unix.AF_INET, Table: 201, Protocol: 212, Gw: net.ParseIP("198.18.1.1"), LinkIndex: k.LinkIndex("eth1")}
}

func ownedRule1000() *netlink.Rule {
	r := netlink.NewRule()
	r.Family, r.Priority, r.Table, r.Protocol = unix.AF_INET, 1000, 201, 212
	r.Src = &net.IPNet{IP: net.ParseIP("198.18.1.2").To4(), Mask: net.CIDRMask(32, 32)}
	return r
}

// scenario steps: health, and the whole fake kernel afterwards.
var scenarioSteps = []struct {
	name   string
	health routing.Snapshot
	golden string
}{{
	name: "all up",
	golden: `
		1000: from 198.18.1.2 lookup 201 proto 212
		1001: from 198.18.2.2 lookup 202 proto 212
		1050: from all fwmark 0x2/0xff lookup 202 proto 212
		default via 198.18.1.1 dev eth1 table 201 proto 212 src 198.18.1.2
		198.18.99.0/24 via 198.18.2.1 dev eth2 table 201 proto 4
		default via 198.18.2.1 dev eth2 table 202 proto 212 src 198.18.2.2
		default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 3 nexthop via 198.18.2.1 dev eth2 weight 1
		-6 default table main proto 212 metric 1024 nexthop via 2001:db8:1::1 dev eth1 weight 2 nexthop via fe80::1 dev eth2 weight 1`,
}, {
	name:   "isp1 down, v6b degraded",
	health: routing.Snapshot{"isp1": routing.Down, "v6b": routing.Degraded},
	golden: `
		1000: from 198.18.1.2 lookup 201 proto 212
		1001: from 198.18.2.2 lookup 202 proto 212
		1050: from all fwmark 0x2/0xff lookup 202 proto 212
		default via 198.18.2.1 dev eth2 table 201 proto 212 src 198.18.1.2
		198.18.99.0/24 via 198.18.2.1 dev eth2 table 201 proto 4
		default via 198.18.2.1 dev eth2 table 202 proto 212 src 198.18.2.2
		default via 198.18.2.1 dev eth2 table main proto 212
		-6 default table main proto 212 metric 1024 nexthop via 2001:db8:1::1 dev eth1 weight 2 nexthop via fe80::1 dev eth2 weight 1`,
}, {
	name:   "tier 1 down",
	health: routing.Snapshot{"isp1": routing.Down, "isp2": routing.Down, "v6a": routing.Down},
	golden: `
		1000: from 198.18.1.2 lookup 201 proto 212
		1001: from 198.18.2.2 lookup 202 proto 212
		1050: from all fwmark 0x2/0xff lookup 202 proto 212
		default via 198.18.3.1 dev eth3 table 201 proto 212 src 198.18.1.2
		198.18.99.0/24 via 198.18.2.1 dev eth2 table 201 proto 4
		default via 198.18.2.1 dev eth2 table 202 proto 212 src 198.18.2.2
		default via 198.18.3.1 dev eth3 table main proto 212
		-6 default via fe80::1 dev eth2 table main proto 212 metric 1024`,
}, {
	name:   "everything down",
	health: routing.Snapshot{"isp1": routing.Down, "isp2": routing.Down, "backup": routing.Down, "v6a": routing.Down, "v6b": routing.Down},
	golden: `
		1000: from 198.18.1.2 lookup 201 proto 212
		1001: from 198.18.2.2 lookup 202 proto 212
		1050: from all fwmark 0x2/0xff lookup 202 proto 212
		default via 198.18.1.1 dev eth1 table 201 proto 212 src 198.18.1.2
		198.18.99.0/24 via 198.18.2.1 dev eth2 table 201 proto 4
		default via 198.18.2.1 dev eth2 table 202 proto 212 src 198.18.2.2
		unreachable default table main proto 212
		-6 blackhole default table main proto 212 metric 1024`,
}}

// The fake kernel reaches each step's golden dump whatever came before, in
// any order, and a second Apply of the same state writes nothing.
func TestScenarioRandomOrder(t *testing.T) {
	p := mustPolicy(t, dualStack)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	k := routingtest.NewMemKernel("eth1", "eth2", "eth3")
	foreignRoute(t, k)
	rec, err := routing.NewReconciler(routing.Config{Netlink: k, Protocol: 212})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	ctx := context.Background()
	order := []int{}
	for range 4 {
		order = append(order, rng.Perm(len(scenarioSteps))...)
	}
	prev := -1
	for _, i := range order {
		st := scenarioSteps[i]
		want := routing.Desired(p, st.health)
		n, err := rec.Apply(ctx, want)
		if err != nil {
			t.Fatalf("step %q: %v", st.name, err)
		}
		if i == prev && n != 0 {
			t.Errorf("step %q repeated: %d writes, want 0", st.name, n)
		}
		if diff := cmp.Diff(dump(st.golden), routing.Format(k.State())); diff != "" {
			t.Fatalf("step %q after %v: kernel (-want +got):\n%s", st.name, order, diff)
		}
		if n, err := rec.Apply(ctx, want); err != nil || n != 0 {
			t.Errorf("step %q: second apply made %d writes (err %v), want 0", st.name, n, err)
		}
		if diff := cmp.Diff(routing.Format(want), routing.Format(rec.Installed())); diff != "" {
			t.Errorf("step %q: Installed (-want +got):\n%s", st.name, diff)
		}
		prev = i
	}
}

func dumpIs(k *routingtest.MemKernel, golden string) func() (bool, string) {
	return func() (bool, string) {
		got := routing.Format(k.State())
		diff := cmp.Diff(dump(golden), got)
		return diff == "", "kernel (-want +got):\n" + diff
	}
}

// Run puts back what someone else deleted, including a rule and what a
// link flush removed, and counts the repairs.
func TestScenarioDriftRepair(t *testing.T) {
	p := mustPolicy(t, dualStack)
	k := routingtest.NewMemKernel("eth1", "eth2", "eth3")
	foreignRoute(t, k)
	reg := prometheus.NewRegistry()
	m := routing.NewMetrics(reg)
	rec, err := routing.NewReconciler(routing.Config{Netlink: k, Protocol: 212, Metrics: m, ResyncEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	defer startRun(t, context.Background(), rec)()

	rec.Set(routing.Desired(p, nil))
	eventually(t, "initial apply", 5*time.Second, dumpIs(k, scenarioSteps[0].golden))

	if err := k.RouteDel(owned201(k)); err != nil {
		t.Fatalf("deleting owned route as an outsider: %v", err)
	}
	eventually(t, "route repaired", 5*time.Second, dumpIs(k, scenarioSteps[0].golden))
	if err := k.RuleDel(ownedRule1000()); err != nil {
		t.Fatalf("deleting owned rule as an outsider: %v", err)
	}
	eventually(t, "rule repaired", 5*time.Second, dumpIs(k, scenarioSteps[0].golden))
	k.FlushLink("eth1")
	eventually(t, "link flush repaired", 5*time.Second, dumpIs(k, scenarioSteps[0].golden))

	repairs := func(obj string) float64 { return series(t, reg, "uplinkd_drift_repairs_total", "object", obj) }
	if got := repairs("route"); got < 2 {
		t.Errorf("uplinkd_drift_repairs_total{object=route} = %v, want >= 2", got)
	}
	if got := repairs("rule"); got != 1 {
		t.Errorf("uplinkd_drift_repairs_total{object=rule} = %v, want 1", got)
	}

	// A health change is applied as a change, not counted as a repair.
	before := repairs("route")
	rec.Set(routing.Desired(p, scenarioSteps[1].health))
	eventually(t, "health change applied", 5*time.Second, dumpIs(k, scenarioSteps[1].golden))
	if got := repairs("route"); got != before {
		t.Errorf("health change counted as %v repairs", got-before)
	}
	if got := series(t, reg, "uplinkd_netlink_writes_total", "object", "route", "op", "replace", "result", "ok"); got != 2 {
		t.Errorf("uplinkd_netlink_writes_total{route,replace,ok} = %v, want 2 (table 201 and the IPv4 default)", got)
	}
	if n, err := testutil.GatherAndCount(reg, "uplinkd_resyncs_total"); err != nil || n == 0 {
		t.Errorf("uplinkd_resyncs_total not gathered: %d, %v", n, err)
	}
}

// Without any event, the periodic resync still finds and repairs drift.
func TestScenarioTimerResync(t *testing.T) {
	p := mustPolicy(t, dualStack)
	k := routingtest.NewMemKernel("eth1", "eth2", "eth3")
	reg := prometheus.NewRegistry()
	m := routing.NewMetrics(reg)
	rec, err := routing.NewReconciler(routing.Config{Netlink: k, Watcher: silentWatcher{}, Protocol: 212, Metrics: m, ResyncEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	defer startRun(t, context.Background(), rec)()
	want := routing.Desired(p, nil)
	rec.Set(want)
	eventually(t, "initial apply", 5*time.Second, dumpIs(k, routing.Format(want)))
	if err := k.RuleDel(ownedRule1000()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "rule repaired by the timer", 5*time.Second, dumpIs(k, routing.Format(want)))
	if got := series(t, reg, "uplinkd_resyncs_total", "reason", routing.ReasonTimer); got < 1 {
		t.Errorf("uplinkd_resyncs_total{reason=timer} = %v, want >= 1", got)
	}
}

// A program fighting uplinkd over a route is answered at a bounded rate.
func TestScenarioRepairRateLimit(t *testing.T) {
	p := mustPolicy(t, dualStack)
	k := routingtest.NewMemKernel("eth1", "eth2", "eth3")
	rec, err := routing.NewReconciler(routing.Config{Netlink: k, Protocol: 212, ResyncEvery: time.Hour, Debounce: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	defer startRun(t, context.Background(), rec)()
	want := routing.Desired(p, nil)
	rec.Set(want)
	eventually(t, "initial apply", 5*time.Second, dumpIs(k, routing.Format(want)))
	base := rec.Writes()
	r201 := owned201(k)
	// Delete the route 40 times as fast as it comes back, for 500 ms.
	end := time.Now().Add(500 * time.Millisecond)
	for i := 0; i < 40 && time.Now().Before(end); i++ {
		_ = k.RouteDel(r201)
		time.Sleep(10 * time.Millisecond)
	}
	repairs := rec.Writes() - base
	// Burst of RepairBurst, then RepairRate per second: far fewer than 40.
	if max := routing.RepairBurst + int(routing.RepairRate) + 2; repairs > max {
		t.Errorf("%d repairs in 500 ms against a fighting program, want at most %d", repairs, max)
	}
	if repairs == 0 {
		t.Errorf("no repairs at all")
	}
	eventually(t, "route back after the fight", 5*time.Second, dumpIs(k, routing.Format(want)))
}

// Close stops a running Run, is idempotent, and a later Run refuses.
// OnApplied sees each apply that wrote, and Withdraw leaves only what
// uplinkd does not own.
func TestScenarioLifecycle(t *testing.T) {
	p := mustPolicy(t, dualStack)
	k := routingtest.NewMemKernel("eth1", "eth2", "eth3")
	foreignRoute(t, k)
	applied := make(chan []routing.Op, 16)
	rec, err := routing.NewReconciler(routing.Config{Netlink: k, Protocol: 212, ResyncEvery: time.Hour,
		OnApplied: func(ops []routing.Op) { applied <- ops }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rec.Run(context.Background()) }()
	// A burst of Sets is coalesced; the last one wins.
	for _, st := range scenarioSteps {
		rec.Set(routing.Desired(p, st.health))
	}
	rec.Set(routing.Desired(p, nil))
	eventually(t, "last Set applied", 5*time.Second, dumpIs(k, scenarioSteps[0].golden))
	select {
	case ops := <-applied:
		if len(ops) == 0 {
			t.Errorf("OnApplied called with no ops")
		}
	case <-time.After(5 * time.Second):
		t.Errorf("OnApplied not called")
	}
	if err := rec.Withdraw(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(dump(`198.18.99.0/24 via 198.18.2.1 dev eth2 table 201 proto 4`), routing.Format(k.State())); diff != "" {
		t.Errorf("after Withdraw (-want +got):\n%s", diff)
	}
	if got := rec.Installed(); len(got.Routes)+len(got.Rules) != 0 {
		t.Errorf("Installed after Withdraw = %s", routing.Format(got))
	}
	rec.Close()
	rec.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	if err := rec.Run(context.Background()); err == nil {
		t.Errorf("Run after Close succeeded")
	}
}

func TestNewReconcilerRejectsProtocolZero(t *testing.T) {
	if _, err := routing.NewReconciler(routing.Config{Netlink: routingtest.NewMemKernel(), Protocol: 0}); err == nil {
		t.Error("protocol 0 accepted; it would claim routes that carry no protocol")
	}
}
