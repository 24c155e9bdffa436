package routing

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/uplinkd/uplinkd/internal/nstest"
	"github.com/uplinkd/uplinkd/policy"
)

// Privileged tests: real namespaces, real veths, the real kernel. Each
// test builds its own nstest.TwoUplinks, so they never share state.

// labPolicy is the TwoUplinks host as a router (groups for IPv4 and IPv6)
// and a realserver (one table per source address) at once.
const labPolicy = `
[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"
weight = 3
sources = ["198.18.1.2"]
table = 201
on_down = "failover"

[gateway.isp2]
address = "198.18.2.1"
interface = "eth2"
sources = ["198.18.2.2"]
table = 202

[gateway.isp1-v6]
address = "2001:db8:1::1"
interface = "eth1"
weight = 2
sources = ["2001:db8:1::2"]
table = 211

[gateway.isp2-v6]
address = "2001:db8:2::1"
interface = "eth2"
sources = ["2001:db8:2::2"]
table = 212
on_down = "failover"

[group.wan4]
gateways = ["isp1", "isp2"]
last_resort = "%s"

[group.wan6]
gateways = ["isp1-v6", "isp2-v6"]
last_resort = "%s"

[rule.marked]
fwmark = "0x2/0xff"
gateway = "isp2"
priority = 1050

[announce.svc]
prefix = "198.18.50.0/24"
track = "wan4"
type = "blackhole"
table = 250
`

func labPolicyWith(t testing.TB, lastResort string) *policy.Policy {
	return mustPolicy(t, sprintf(labPolicy, lastResort, lastResort))
}

// labKernel is the production Netlink (Kernel, strict route dumps) of
// the host's namespace, closed at cleanup.
func labKernel(t testing.TB, h *nstest.Host) *Kernel {
	t.Helper()
	k, err := NewKernel(h.NsHandle(), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

// newLabReconciler's periodic resync is an hour away, so every repair in a
// test comes from a netlink hint (route, link, address or rule event).
// It runs on Kernel, as uplinkd does.
func newLabReconciler(t testing.TB, h *nstest.Host, m *Metrics) *Reconciler {
	t.Helper()
	rec, err := NewReconciler(Config{
		Netlink:     labKernel(t, h),
		Watcher:     NewKernelWatcher(h.NsHandle()),
		Protocol:    212,
		Logger:      quietLogger(),
		Metrics:     m,
		ResyncEvery: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() })
	return rec
}

// kernelDump is the owned state as read back from the kernel.
func kernelDump(t testing.TB, rec *Reconciler) string {
	t.Helper()
	s, err := rec.ReadOwned(State{})
	if err != nil {
		t.Fatal(err)
	}
	return Format(s)
}

// routeGet returns `ip route get DST [from SRC] [mark M]` without the cache
// details, e.g. "198.18.100.1 from 198.18.1.2 via 198.18.1.1 dev eth1 table 201".
func routeGet(t testing.TB, h *nstest.Host, args ...string) string {
	t.Helper()
	ip := "ip"
	if strings.Contains(args[0], ":") {
		ip = "ip -6"
	}
	out, err := h.Run(append(strings.Fields(ip), append([]string{"route", "get"}, args...)...)...)
	if err != nil {
		return "error: " + strings.TrimSpace(out)
	}
	line := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
	// Drop per-lookup details that say nothing about the path.
	f := strings.Fields(line)
	var keep []string
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case "uid", "src", "proto", "metric", "pref", "mark":
			i++
			continue
		case "cache":
			continue
		}
		keep = append(keep, f[i])
	}
	return strings.Join(keep, " ")
}

func TestKernelRouterAndRealserver(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	h := tu.Host
	p := labPolicyWith(t, "keep")
	rec := newLabReconciler(t, h, nil)
	ctx := context.Background()

	n, err := rec.Apply(ctx, Desired(p, nil))
	if err != nil {
		t.Fatalf("first apply: %v", err)
	}
	want := dump(`
		1000: from 198.18.1.2 lookup 201 proto 212
		-6 1001: from 2001:db8:1::2 lookup 211 proto 212
		1002: from 198.18.2.2 lookup 202 proto 212
		-6 1003: from 2001:db8:2::2 lookup 212 proto 212
		1050: from all fwmark 0x2/0xff lookup 202 proto 212
		default via 198.18.1.1 dev eth1 table 201 proto 212 src 198.18.1.2
		default via 198.18.2.1 dev eth2 table 202 proto 212 src 198.18.2.2
		blackhole 198.18.50.0/24 table 250 proto 212
		default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 3 nexthop via 198.18.2.1 dev eth2 weight 1
		-6 default via 2001:db8:1::1 dev eth1 table 211 proto 212 src 2001:db8:1::2 metric 1024
		-6 default via 2001:db8:2::1 dev eth2 table 212 proto 212 src 2001:db8:2::2 metric 1024
		-6 default table main proto 212 metric 1024 nexthop via 2001:db8:1::1 dev eth1 weight 2 nexthop via 2001:db8:2::1 dev eth2 weight 1`)
	if diff := cmp.Diff(want, kernelDump(t, rec)); diff != "" {
		t.Fatalf("kernel after first apply (-want +got):\n%s", diff)
	}
	if wantN := 12; n != wantN {
		t.Errorf("first apply made %d writes, want %d (one per route and rule)", n, wantN)
	}
	// What iproute2 sees: weights on both families.
	out4 := h.MustRun(t, "ip", "route", "show", "default", "proto", "212")
	out6 := h.MustRun(t, "ip", "-6", "route", "show", "default", "proto", "212")
	for _, s := range []string{"nexthop via 198.18.1.1 dev eth1 weight 3", "nexthop via 198.18.2.1 dev eth2 weight 1"} {
		if !strings.Contains(out4, s) {
			t.Errorf("ip route show lacks %q:\n%s", s, out4)
		}
	}
	for _, s := range []string{"nexthop via 2001:db8:1::1 dev eth1 weight 2", "nexthop via 2001:db8:2::1 dev eth2 weight 1"} {
		if !strings.Contains(out6, s) {
			t.Errorf("ip -6 route show lacks %q:\n%s", s, out6)
		}
	}

	// Per-source tables, as the kernel resolves them.
	for _, c := range []struct{ args, want string }{
		{"198.18.100.1 from 198.18.1.2", "198.18.100.1 from 198.18.1.2 via 198.18.1.1 dev eth1 table 201"},
		{"198.18.100.1 from 198.18.2.2", "198.18.100.1 from 198.18.2.2 via 198.18.2.1 dev eth2 table 202"},
		{"2001:db8:100::1 from 2001:db8:1::2", "2001:db8:100::1 from 2001:db8:1::2 via 2001:db8:1::1 dev eth1 table 211"},
		{"2001:db8:100::1 from 2001:db8:2::2", "2001:db8:100::1 from 2001:db8:2::2 via 2001:db8:2::1 dev eth2 table 212"},
		{"198.18.100.1 mark 0x102", "198.18.100.1 via 198.18.2.1 dev eth2 table 202"},
	} {
		if got := routeGet(t, h, strings.Fields(c.args)...); got != c.want {
			t.Errorf("ip route get %s = %q, want %q", c.args, got, c.want)
		}
	}
	// Traffic really flows through the multipath default.
	if err := h.Ping(t, "-c", "1", "-W", "2", nstest.TargetAddr4.String()); err != nil {
		t.Errorf("ping %s through the multipath default: %v", nstest.TargetAddr4, err)
	}
	if err := h.Ping(t, "-6", "-c", "1", "-W", "2", nstest.TargetAddr6.String()); err != nil {
		t.Errorf("ping %s through the IPv6 multipath default: %v", nstest.TargetAddr6, err)
	}

	// isp1 down: the group drops it in one replace, table 201 fails over
	// to isp2 keeping its source; isp2-v6 down: table 212 fails over.
	down := Snapshot{"isp1": Down, "isp2-v6": Down}
	n, err = rec.Apply(ctx, Desired(p, down))
	if err != nil {
		t.Fatalf("apply isp1 down: %v", err)
	}
	if n != 4 {
		t.Errorf("isp1 and isp2-v6 down made %d writes, want 4 (two defaults, two failed-over tables)", n)
	}
	for _, c := range []struct{ args, want string }{
		{"198.18.100.1", "198.18.100.1 via 198.18.2.1 dev eth2"},
		{"198.18.100.1 from 198.18.1.2", "198.18.100.1 from 198.18.1.2 via 198.18.2.1 dev eth2 table 201"},
		{"2001:db8:100::1", "2001:db8:100::1 from :: via 2001:db8:1::1 dev eth1"},
		{"2001:db8:100::1 from 2001:db8:2::2", "2001:db8:100::1 from 2001:db8:2::2 via 2001:db8:1::1 dev eth1 table 212"},
	} {
		if got := routeGet(t, h, strings.Fields(c.args)...); got != c.want {
			t.Errorf("after failover: ip route get %s = %q, want %q", c.args, got, c.want)
		}
	}
	// A restart (new reconciler, same policy and health) writes nothing.
	rec2 := newLabReconciler(t, h, nil)
	if n, err := rec2.Apply(ctx, Desired(p, down)); err != nil || n != 0 {
		t.Errorf("restart: %d writes (err %v), want 0", n, err)
	}
	// Back up: back to the first state.
	if _, err := rec2.Apply(ctx, Desired(p, nil)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, kernelDump(t, rec2)); diff != "" {
		t.Errorf("kernel after recovery (-want +got):\n%s", diff)
	}
}

func TestKernelTierFailover(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	h := tu.Host
	p := mustPolicy(t, `
[gateway.primary]
address = "198.18.1.1"
interface = "eth1"
tier = 1
[gateway.backup]
address = "198.18.2.1"
interface = "eth2"
tier = 2
[gateway.primary6]
address = "2001:db8:1::1"
interface = "eth1"
[gateway.backup6]
address = "2001:db8:2::1"
interface = "eth2"
tier = 2
[group.wan]
gateways = ["primary", "backup"]
[group.wan6]
gateways = ["primary6", "backup6"]
`)
	rec := newLabReconciler(t, h, nil)
	ctx := context.Background()
	steps := []struct {
		health     Snapshot
		get4, get6 string
		writes     int
	}{
		{nil, "198.18.100.1 via 198.18.1.1 dev eth1", "2001:db8:100::1 from :: via 2001:db8:1::1 dev eth1", 2},
		{Snapshot{"primary": Down, "primary6": Down}, "198.18.100.1 via 198.18.2.1 dev eth2", "2001:db8:100::1 from :: via 2001:db8:2::1 dev eth2", 2},
		// A degraded primary yields to an Up backup in a higher tier.
		{Snapshot{"primary": Degraded, "primary6": Down}, "198.18.100.1 via 198.18.2.1 dev eth2", "2001:db8:100::1 from :: via 2001:db8:2::1 dev eth2", 0},
		// With nothing Up left, the degraded primary carries traffic.
		{Snapshot{"primary": Degraded, "backup": Down, "primary6": Down}, "198.18.100.1 via 198.18.1.1 dev eth1", "2001:db8:100::1 from :: via 2001:db8:2::1 dev eth2", 1},
		{nil, "198.18.100.1 via 198.18.1.1 dev eth1", "2001:db8:100::1 from :: via 2001:db8:1::1 dev eth1", 1},
	}
	for i, st := range steps {
		n, err := rec.Apply(ctx, Desired(p, st.health))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if n != st.writes {
			t.Errorf("step %d: %d writes, want %d", i, n, st.writes)
		}
		if got := routeGet(t, h, "198.18.100.1"); got != st.get4 {
			t.Errorf("step %d: ip route get = %q, want %q", i, got, st.get4)
		}
		if got := routeGet(t, h, "2001:db8:100::1"); got != st.get6 {
			t.Errorf("step %d: ip -6 route get = %q, want %q", i, got, st.get6)
		}
		if err := h.Ping(t, "-c", "1", "-W", "2", nstest.TargetAddr4.String()); err != nil {
			t.Errorf("step %d: ping: %v", i, err)
		}
	}
}

func TestKernelLastResort(t *testing.T) {
	allDown := Snapshot{"isp1": Down, "isp2": Down, "isp1-v6": Down, "isp2-v6": Down}
	for _, c := range []struct {
		mode       string
		main, get4 string
	}{
		{"keep", "default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 3 nexthop via 198.18.2.1 dev eth2 weight 1\n" +
			"-6 default table main proto 212 metric 1024 nexthop via 2001:db8:1::1 dev eth1 weight 2 nexthop via 2001:db8:2::1 dev eth2 weight 1\n",
			"198.18.100.1 via"},
		{"unreachable", "unreachable default table main proto 212\n-6 unreachable default table main proto 212 metric 1024\n",
			"error: RTNETLINK answers: No route to host"},
		{"blackhole", "blackhole default table main proto 212\n-6 blackhole default table main proto 212 metric 1024\n",
			"error: RTNETLINK answers: Invalid argument"},
		{"remove", "", "error: RTNETLINK answers: Network is unreachable"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			tu := nstest.NewTwoUplinks(t)
			h := tu.Host
			p := labPolicyWith(t, c.mode)
			rec := newLabReconciler(t, h, nil)
			ctx := context.Background()
			if _, err := rec.Apply(ctx, Desired(p, nil)); err != nil {
				t.Fatal(err)
			}
			n, err := rec.Apply(ctx, Desired(p, allDown))
			if err != nil {
				t.Fatal(err)
			}
			var main strings.Builder
			for _, l := range strings.SplitAfter(kernelDump(t, rec), "\n") {
				if strings.Contains(l, "table main") {
					main.WriteString(l)
				}
			}
			if diff := cmp.Diff(c.main, main.String()); diff != "" {
				t.Errorf("main table with every gateway down (-want +got):\n%s", diff)
			}
			if got := routeGet(t, h, "198.18.100.1"); !strings.HasPrefix(got, c.get4) {
				t.Errorf("ip route get 198.18.100.1 = %q, want prefix %q", got, c.get4)
			}
			// The change is one replace per family (keep and the reject
			// types) or one delete per family and the announce (remove);
			// never a delete followed by an add.
			wantN := map[string]int{"keep": 0, "unreachable": 2, "blackhole": 2, "remove": 2}[c.mode] + 1 // + the withdrawn announce
			if n != wantN {
				t.Errorf("%s: %d writes, want %d", c.mode, n, wantN)
			}
			// Recovery replaces the reject routes (or re-adds the
			// removed ones) with the multipath defaults, both families.
			if _, err := rec.Apply(ctx, Desired(p, nil)); err != nil {
				t.Fatalf("recovery: %v", err)
			}
			if diff := cmp.Diff(Format(Desired(p, nil)), kernelDump(t, rec)); diff != "" {
				t.Errorf("after recovery (-want +got):\n%s", diff)
			}
			if err := h.Ping(t, "-6", "-c", "1", "-W", "2", nstest.TargetAddr6.String()); err != nil {
				t.Errorf("ping -6 after recovery: %v", err)
			}
		})
	}
}

func TestKernelDriftRepair(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	h := tu.Host
	p := labPolicyWith(t, "keep")
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	rec := newLabReconciler(t, h, m)
	defer startRun(t, context.Background(), rec)()
	want := Desired(p, nil)
	rec.Set(want)
	golden := Format(want)
	converged := func() (bool, string) {
		got := kernelDump(t, rec)
		diff := cmp.Diff(golden, got)
		return diff == "", diff
	}
	eventually(t, "initial apply", 10*time.Second, converged)

	check := func(what string, args ...string) {
		t.Helper()
		start := time.Now()
		h.MustRun(t, args...)
		eventually(t, what+" repaired", 10*time.Second, converged)
		// The contract is one second; the deadline above is generous so a
		// loaded CI machine does not flake, and the time is logged.
		t.Logf("%s repaired in %v", what, time.Since(start).Round(time.Millisecond))
	}
	check("ip route del table 201", "ip", "route", "del", "default", "table", "201")
	check("ip -6 route del multipath", "ip", "-6", "route", "del", "default", "proto", "212")
	check("ip rule del", "ip", "rule", "del", "pref", "1000")
	check("ip -6 rule del", "ip", "-6", "rule", "del", "pref", "1003")
	check("changed weights", "ip", "route", "replace", "default", "proto", "212",
		"nexthop", "via", "198.18.1.1", "dev", "eth1", "nexthop", "via", "198.18.2.1", "dev", "eth2")
	// A link going down flushes its routes; they come back with the link.
	h.MustRun(t, "ip", "link", "set", "eth1", "down")
	time.Sleep(200 * time.Millisecond)
	check("link down and up", "ip", "link", "set", "eth1", "up")
	if got := testutil.ToFloat64(m.repairs.WithLabelValues("route")); got < 4 {
		t.Errorf("uplinkd_drift_repairs_total{object=route} = %v, want >= 4", got)
	}
	if got := testutil.ToFloat64(m.repairs.WithLabelValues("rule")); got < 2 {
		t.Errorf("uplinkd_drift_repairs_total{object=rule} = %v, want >= 2", got)
	}
}

func TestKernelForeignUntouched(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	h := tu.Host
	p := labPolicyWith(t, "keep")
	// Someone else's routes in tables uplinkd manages, one on a key it
	// wants (the default of table 202), and someone else's rule.
	h.MustRun(t, "ip", "route", "add", "198.18.99.0/24", "via", "198.18.2.1", "table", "201", "proto", "static")
	h.MustRun(t, "ip", "route", "add", "default", "via", "198.18.1.1", "table", "202", "proto", "static")
	h.MustRun(t, "ip", "route", "add", "198.18.98.0/24", "via", "198.18.1.1", "proto", "static")
	h.MustRun(t, "ip", "rule", "add", "pref", "1000", "from", "198.18.77.0/24", "lookup", "201")
	foreign := func() string {
		return h.MustRun(t, "ip", "route", "show", "table", "all", "proto", "static") +
			h.MustRun(t, "ip", "rule", "show", "pref", "1000")
	}
	before := foreign()
	rec := newLabReconciler(t, h, nil)
	ctx := context.Background()
	_, err := rec.Apply(ctx, Desired(p, nil))
	if err == nil || !strings.Contains(err.Error(), "foreign") {
		t.Errorf("apply with a foreign default in table 202: err = %v, want a conflict", err)
	}
	if got := routeGet(t, h, "198.18.100.1", "from", "198.18.2.2"); got != "198.18.100.1 from 198.18.2.2 via 198.18.1.1 dev eth1 table 202" {
		t.Errorf("foreign default of table 202 was changed: ip route get = %q", got)
	}
	if _, err := rec.Apply(ctx, Desired(p, Snapshot{"isp1": Down})); err == nil {
		t.Errorf("conflict not reported on the second apply")
	}
	if err := rec.Withdraw(ctx); err != nil {
		t.Fatalf("withdraw: %v", err)
	}
	if after := foreign(); after != before {
		t.Errorf("foreign state changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if left := kernelDump(t, rec); left != "" {
		t.Errorf("withdraw left owned state:\n%s", left)
	}
}

func TestKernelTuning(t *testing.T) {
	lab := nstest.New(t)
	h := lab.Host("tune")
	other := lab.Host("peer")
	lab.Link(h, "eth1", other, "eth0")
	lab.Link(h, "eth2", other, "eth1")
	yes, l4 := true, 1
	k := policy.Kernel{IgnoreRoutesWithLinkdown: &yes, FibMultipathHashPolicy: &l4}
	before2 := h.SysctlGet(t, "net.ipv4.conf.eth2.ignore_routes_with_linkdown")
	useNeighBefore := h.SysctlGet(t, "net.ipv4.fib_multipath_use_neigh")
	var changes []SysctlChange
	err := h.Do(func() error {
		var err error
		changes, err = TuneKernel(k, []string{"eth1", "absent0"}, quietLogger())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"net.ipv4.conf.eth1.ignore_routes_with_linkdown": "1",
		"net.ipv6.conf.eth1.ignore_routes_with_linkdown": "1",
		"net.ipv4.fib_multipath_hash_policy":             "1",
		"net.ipv6.fib_multipath_hash_policy":             "1",
		// Not managed or not set by the policy: untouched.
		"net.ipv4.conf.eth2.ignore_routes_with_linkdown": before2,
		"net.ipv4.fib_multipath_use_neigh":               useNeighBefore,
	} {
		if got := h.SysctlGet(t, key); got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}
	if len(changes) != 4 {
		t.Errorf("changes = %v, want 4", changes)
	}
	// Already as wanted: nothing more is written or logged.
	err = h.Do(func() error {
		var err error
		changes, err = TuneKernel(k, []string{"eth1"}, quietLogger())
		return err
	})
	if err != nil || len(changes) != 0 {
		t.Errorf("second tuning: %v, %v; want no changes", changes, err)
	}
	if err := h.Do(func() error { _, err := TuneKernel(policy.Kernel{}, []string{"eth1"}, nil); return err }); err != nil {
		t.Errorf("empty tuning: %v", err)
	}
}

// Every health change of a group is a replace: `ip monitor` never sees the
// main table's default deleted, in either family, through failover, last
// resort and recovery.
func TestKernelNeverWithoutDefault(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	h := tu.Host
	p := labPolicyWith(t, "unreachable")
	rec := newLabReconciler(t, h, nil)
	ctx := context.Background()
	if _, err := rec.Apply(ctx, Desired(p, nil)); err != nil {
		t.Fatal(err)
	}
	mon := h.Start(t, "ip", "monitor", "route")
	// Wait until the monitor is listening: a sentinel route it must report.
	// Each poll adds or deletes it, so every poll makes an event.
	sentinel := []string{"198.18.97.0/24", "via", "198.18.1.1", "table", "999"}
	present := false
	eventually(t, "ip monitor listening", 10*time.Second, func() (bool, string) {
		op := "add"
		if present {
			op = "del"
		}
		h.MustRun(t, append([]string{"ip", "route", op}, sentinel...)...)
		present = !present
		out := h.Output(mon)
		return strings.Contains(out, "198.18.97.0/24"), out
	})
	if !present {
		h.MustRun(t, append([]string{"ip", "route", "add"}, sentinel...)...)
	}
	steps := []Snapshot{
		{"isp1": Down, "isp1-v6": Down},
		{"isp1": Down, "isp2": Down, "isp1-v6": Down, "isp2-v6": Down},
		{"isp2": Down, "isp2-v6": Down},
		{"isp2": Degraded},
		nil,
	}
	for i, st := range steps {
		if _, err := rec.Apply(ctx, Desired(p, st)); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	// The last change must show up before the monitor is stopped.
	h.MustRun(t, "ip", "route", "del", "198.18.97.0/24", "table", "999")
	eventually(t, "monitor caught up", 10*time.Second, func() (bool, string) {
		out := h.Output(mon)
		return strings.HasSuffix(strings.TrimSpace(out), "Deleted 198.18.97.0/24 via 198.18.1.1 dev eth1 table 999"), out
	})
	h.Stop(mon)
	out := h.Output(mon)
	var replaced int
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Deleted") && strings.Contains(l, "default") && !strings.Contains(l, "table") {
			t.Errorf("main table default deleted during a health change: %s", l)
		}
		if strings.HasPrefix(l, "default") || strings.HasPrefix(l, "unreachable default") {
			replaced++
		}
	}
	if replaced < len(steps) {
		t.Errorf("monitor saw %d default route changes, want at least %d:\n%s", replaced, len(steps), out)
	}
}

// Announce routes of every kind come and go with what they track, and a
// restart rewrites none of them (a "via" without "dev" included, which the
// kernel reads back with the device it resolved).
func TestKernelAnnounces(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	h := tu.Host
	p := mustPolicy(t, `
[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"
[gateway.isp2]
address = "198.18.2.1"
interface = "eth2"
[gateway.isp1-v6]
address = "2001:db8:1::1"
interface = "eth1"
[group.wan]
gateways = ["isp1", "isp2"]
table = 100
[announce.via]
prefix = "198.18.60.0/24"
track = "isp1"
via = "198.18.1.1"
[announce.dev]
prefix = "198.18.61.0/24"
track = "isp2"
dev = "eth2"
[announce.group]
prefix = "198.18.62.0/24"
track = "wan"
[announce.hole]
prefix = "198.18.63.0/24"
track = "wan"
type = "blackhole"
[announce.six]
prefix = "2001:db8:60::/48"
track = "isp1-v6"
type = "unreachable"
table = 250
`)
	rec := newLabReconciler(t, h, nil)
	ctx := context.Background()
	if _, err := rec.Apply(ctx, Desired(p, nil)); err != nil {
		t.Fatal(err)
	}
	want := dump(`
		default table 100 proto 212 nexthop via 198.18.1.1 dev eth1 weight 1 nexthop via 198.18.2.1 dev eth2 weight 1
		198.18.60.0/24 via 198.18.1.1 dev eth1 table main proto 212
		198.18.61.0/24 dev eth2 table main proto 212
		198.18.62.0/24 table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 1 nexthop via 198.18.2.1 dev eth2 weight 1
		blackhole 198.18.63.0/24 table main proto 212
		-6 unreachable 2001:db8:60::/48 table 250 proto 212 metric 1024`)
	if diff := cmp.Diff(want, kernelDump(t, rec)); diff != "" {
		t.Fatalf("announces (-want +got):\n%s", diff)
	}
	if got := routeGet(t, h, "198.18.61.1"); got != "198.18.61.1 dev eth2" {
		t.Errorf("ip route get 198.18.61.1 = %q", got)
	}
	if n, err := newLabReconciler(t, h, nil).Apply(ctx, Desired(p, nil)); err != nil || n != 0 {
		t.Errorf("restart: %d writes (err %v), want 0", n, err)
	}
	// isp1 down: its announce goes, the group's follows isp2 alone.
	n, err := rec.Apply(ctx, Desired(p, Snapshot{"isp1": Down, "isp1-v6": Down}))
	if err != nil {
		t.Fatal(err)
	}
	want = dump(`
		default via 198.18.2.1 dev eth2 table 100 proto 212
		198.18.61.0/24 dev eth2 table main proto 212
		198.18.62.0/24 via 198.18.2.1 dev eth2 table main proto 212
		blackhole 198.18.63.0/24 table main proto 212`)
	if diff := cmp.Diff(want, kernelDump(t, rec)); diff != "" {
		t.Errorf("announces with isp1 down (-want +got):\n%s", diff)
	}
	if n != 4 {
		t.Errorf("isp1 down: %d writes, want 4 (two deletes, two replaces)", n)
	}
}
