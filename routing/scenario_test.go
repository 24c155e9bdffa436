package routing

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
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

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// foreignRoute is somebody else's route in a table uplinkd manages.
func foreignRoute(t *testing.T, k Netlink) {
	t.Helper()
	l, err := readLinks(k)
	if err != nil {
		t.Fatal(err)
	}
	_, dst, _ := net.ParseCIDR("198.18.99.0/24")
	err = k.RouteAdd(&netlink.Route{Family: unix.AF_INET, Dst: dst, Table: 201, Protocol: unix.RTPROT_STATIC,
		Gw: net.ParseIP("198.18.2.1"), LinkIndex: l.byName["eth2"]})
	if err != nil {
		t.Fatalf("adding foreign route: %v", err)
	}
}

// scenario steps: health, and the whole fake kernel afterwards.
var scenarioSteps = []struct {
	name   string
	health Snapshot
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
	health: Snapshot{"isp1": Down, "v6b": Degraded},
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
	health: Snapshot{"isp1": Down, "isp2": Down, "v6a": Down},
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
	health: Snapshot{"isp1": Down, "isp2": Down, "backup": Down, "v6a": Down, "v6b": Down},
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
	k := NewMemKernel("eth1", "eth2", "eth3")
	foreignRoute(t, k)
	rec, err := NewReconciler(Config{Netlink: k, Protocol: 212, Logger: quietLogger()})
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
		want := Desired(p, st.health)
		n, err := rec.Apply(ctx, want)
		if err != nil {
			t.Fatalf("step %q: %v", st.name, err)
		}
		if i == prev && n != 0 {
			t.Errorf("step %q repeated: %d writes, want 0", st.name, n)
		}
		if diff := cmp.Diff(dump(st.golden), Format(k.State())); diff != "" {
			t.Fatalf("step %q after %v: kernel (-want +got):\n%s", st.name, order, diff)
		}
		if n, err := rec.Apply(ctx, want); err != nil || n != 0 {
			t.Errorf("step %q: second apply made %d writes (err %v), want 0", st.name, n, err)
		}
		if diff := cmp.Diff(Format(want), Format(rec.Installed())); diff != "" {
			t.Errorf("step %q: Installed (-want +got):\n%s", st.name, diff)
		}
		prev = i
	}
}

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

func dumpIs(k *MemKernel, golden string) func() (bool, string) {
	return func() (bool, string) {
		got := Format(k.State())
		diff := cmp.Diff(dump(golden), got)
		return diff == "", "kernel (-want +got):\n" + diff
	}
}

// Run puts back what someone else deleted, including a rule and what a
// link flush removed, and counts the repairs.
func TestScenarioDriftRepair(t *testing.T) {
	p := mustPolicy(t, dualStack)
	k := NewMemKernel("eth1", "eth2", "eth3")
	foreignRoute(t, k)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	rec, err := NewReconciler(Config{Netlink: k, Protocol: 212, Logger: quietLogger(), Metrics: m, ResyncEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	defer startRun(t, context.Background(), rec)()

	rec.Set(Desired(p, nil))
	eventually(t, "initial apply", 5*time.Second, dumpIs(k, scenarioSteps[0].golden))

	l, _ := readLinks(k)
	own201, _ := toNetlinkRoute(own(201, gw1, "eth1"), l)
	if err := k.RouteDel(own201); err != nil {
		t.Fatalf("deleting owned route as an outsider: %v", err)
	}
	eventually(t, "route repaired", 5*time.Second, dumpIs(k, scenarioSteps[0].golden))
	if err := k.RuleDel(toNetlinkRule(srcRule(1000, 201))); err != nil {
		t.Fatalf("deleting owned rule as an outsider: %v", err)
	}
	eventually(t, "rule repaired", 5*time.Second, dumpIs(k, scenarioSteps[0].golden))
	k.FlushLink("eth1")
	eventually(t, "link flush repaired", 5*time.Second, dumpIs(k, scenarioSteps[0].golden))

	repairs := func(obj string) float64 { return testutil.ToFloat64(m.repairs.WithLabelValues(obj)) }
	if got := repairs("route"); got < 2 {
		t.Errorf("uplinkd_drift_repairs_total{object=route} = %v, want >= 2", got)
	}
	if got := repairs("rule"); got != 1 {
		t.Errorf("uplinkd_drift_repairs_total{object=rule} = %v, want 1", got)
	}

	// A health change is applied as a change, not counted as a repair.
	before := repairs("route")
	rec.Set(Desired(p, scenarioSteps[1].health))
	eventually(t, "health change applied", 5*time.Second, dumpIs(k, scenarioSteps[1].golden))
	if got := repairs("route"); got != before {
		t.Errorf("health change counted as %v repairs", got-before)
	}
	if got := testutil.ToFloat64(m.writes.WithLabelValues("route", "replace", "ok")); got != 2 {
		t.Errorf("uplinkd_netlink_writes_total{route,replace,ok} = %v, want 2 (table 201 and the IPv4 default)", got)
	}
	if n, err := testutil.GatherAndCount(reg, "uplinkd_resyncs_total"); err != nil || n == 0 {
		t.Errorf("uplinkd_resyncs_total not gathered: %d, %v", n, err)
	}
}

// silentWatcher never hints, as when events were lost.
type silentWatcher struct{}

func (silentWatcher) Watch(ctx context.Context, _ chan<- Hint, _ Interest) error {
	<-ctx.Done()
	return nil
}

// Without any event, the periodic resync still finds and repairs drift.
func TestScenarioTimerResync(t *testing.T) {
	p := mustPolicy(t, dualStack)
	k := NewMemKernel("eth1", "eth2", "eth3")
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	rec, err := NewReconciler(Config{Netlink: k, Watcher: silentWatcher{}, Protocol: 212, Logger: quietLogger(), Metrics: m, ResyncEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	defer startRun(t, context.Background(), rec)()
	want := Desired(p, nil)
	rec.Set(want)
	eventually(t, "initial apply", 5*time.Second, dumpIs(k, Format(want)))
	if err := k.RuleDel(toNetlinkRule(srcRule(1000, 201))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "rule repaired by the timer", 5*time.Second, dumpIs(k, Format(want)))
	if got := testutil.ToFloat64(m.resyncs.WithLabelValues(ReasonTimer)); got < 1 {
		t.Errorf("uplinkd_resyncs_total{reason=timer} = %v, want >= 1", got)
	}
}

// A program fighting uplinkd over a route is answered at a bounded rate.
func TestScenarioRepairRateLimit(t *testing.T) {
	p := mustPolicy(t, dualStack)
	k := NewMemKernel("eth1", "eth2", "eth3")
	rec, err := NewReconciler(Config{Netlink: k, Protocol: 212, Logger: quietLogger(), ResyncEvery: time.Hour, Debounce: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	defer startRun(t, context.Background(), rec)()
	want := Desired(p, nil)
	rec.Set(want)
	eventually(t, "initial apply", 5*time.Second, dumpIs(k, Format(want)))
	base := rec.Writes()
	l, _ := readLinks(k)
	r201, _ := toNetlinkRoute(own(201, gw1, "eth1"), l)
	// Delete the route 40 times as fast as it comes back, for 500 ms.
	end := time.Now().Add(500 * time.Millisecond)
	for i := 0; i < 40 && time.Now().Before(end); i++ {
		_ = k.RouteDel(r201)
		time.Sleep(10 * time.Millisecond)
	}
	repairs := rec.Writes() - base
	// Burst of repairBurst, then repairRate per second: far fewer than 40.
	if max := repairBurst + int(repairRate) + 2; repairs > max {
		t.Errorf("%d repairs in 500 ms against a fighting program, want at most %d", repairs, max)
	}
	if repairs == 0 {
		t.Errorf("no repairs at all")
	}
	eventually(t, "route back after the fight", 5*time.Second, dumpIs(k, Format(want)))
}

// Close stops a running Run, is idempotent, and a later Run refuses.
// OnApplied sees each apply that wrote, and Withdraw leaves only what
// uplinkd does not own.
func TestScenarioLifecycle(t *testing.T) {
	p := mustPolicy(t, dualStack)
	k := NewMemKernel("eth1", "eth2", "eth3")
	foreignRoute(t, k)
	applied := make(chan []Op, 16)
	rec, err := NewReconciler(Config{Netlink: k, Protocol: 212, Logger: quietLogger(), ResyncEvery: time.Hour,
		OnApplied: func(ops []Op) { applied <- ops }})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- rec.Run(context.Background()) }()
	// A burst of Sets is coalesced; the last one wins.
	for _, st := range scenarioSteps {
		rec.Set(Desired(p, st.health))
	}
	rec.Set(Desired(p, nil))
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
	if diff := cmp.Diff(dump(`198.18.99.0/24 via 198.18.2.1 dev eth2 table 201 proto 4`), Format(k.State())); diff != "" {
		t.Errorf("after Withdraw (-want +got):\n%s", diff)
	}
	if got := rec.Installed(); len(got.Routes)+len(got.Rules) != 0 {
		t.Errorf("Installed after Withdraw = %s", Format(got))
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
	if _, err := NewReconciler(Config{Netlink: NewMemKernel(), Protocol: 0}); err == nil {
		t.Error("protocol 0 accepted; it would claim routes that carry no protocol")
	}
}
