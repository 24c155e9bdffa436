package routing

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/internal/nstest"
)

// Privileged tests of issue 11.5 and 11.6 on the real kernel, with traffic
// through the routes that matter.

// IPv4: another program prepends a default of its own (same table, prefix
// and metric) beside uplinkd's. uplinkd's next change would replace the
// first route on the key, the foreign one; it must leave it, report the
// conflict, and traffic keeps flowing through the foreign route.
func TestKernelIPv4PrependConflict(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	h := tu.Host
	p := labPolicyWith(t, "keep")
	rec := newLabReconciler(t, h, nil)
	ctx := context.Background()
	if _, err := rec.Apply(ctx, Desired(p, nil)); err != nil {
		t.Fatal(err)
	}
	h.MustRun(t, "ip", "route", "prepend", "default", "via", "198.18.2.1", "dev", "eth2", "proto", "static")
	foreign := "default via 198.18.2.1 dev eth2 \n" // proto is the filter, so ip leaves it out
	if got := h.MustRun(t, "ip", "route", "show", "default", "proto", "static"); got != foreign {
		t.Fatalf("foreign default after the prepend: %q", got)
	}

	// A restarted uplinkd with isp2 down wants main via isp1 alone.
	rec = newLabReconciler(t, h, nil)
	_, err := rec.Apply(ctx, Desired(p, Snapshot{"isp2": Down}))
	if err == nil || !strings.Contains(err.Error(), "foreign route") {
		t.Errorf("Apply: err = %v, want a conflict", err)
	}
	if got := h.MustRun(t, "ip", "route", "show", "default", "proto", "static"); got != foreign {
		t.Errorf("foreign default after uplinkd's change: %q, want %q", got, foreign)
	}
	if cs := rec.Conflicts(); len(cs) != 1 || cs[0].Route.Table != 254 || cs[0].Route.Family != 4 {
		t.Errorf("Conflicts() = %v, want the IPv4 main default", cs)
	}
	if got := routeGet(t, h, nstest.TargetAddr4.String()); !strings.Contains(got, "via 198.18.2.1 dev eth2") {
		t.Errorf("ip route get %s = %q, want the foreign route's path", nstest.TargetAddr4, got)
	}
	if err := h.Ping(t, "-c", "3", "-i", "0.2", "-W", "2", nstest.TargetAddr4.String()); err != nil {
		t.Errorf("ping through the foreign default: %v", err)
	}
}

// IPv6: another program appends a default via a router of its own; the
// kernel merges it into uplinkd's multipath default as a sibling, and a
// dump shows one route of protocol 212. uplinkd's next replace (or a
// withdraw) would delete the sibling with it; uplinkd must leave it, and
// traffic keeps flowing.
func TestKernelIPv6AppendMerge(t *testing.T) {
	tu := nstest.NewTwoUplinks(t)
	h := tu.Host
	tu.GW2.AddAddr(t, "eth0", "2001:db8:2::99/64") // the foreign program's router
	p := labPolicyWith(t, "keep")
	rec := newLabReconciler(t, h, nil)
	defer startRun(t, context.Background(), rec)()
	rec.Set(Desired(p, nil))
	own := "-6 default table main proto 212 metric 1024 nexthop via 2001:db8:1::1 dev eth1 weight 2 nexthop via 2001:db8:2::1 dev eth2 weight 1\n"
	eventually(t, "initial apply", 10*time.Second, func() (bool, string) {
		got := kernelDump(t, rec)
		return strings.Contains(got, own), got
	})
	h.MustRun(t, "ip", "-6", "route", "append", "default", "via", "2001:db8:2::99", "dev", "eth2", "proto", "static", "metric", "1024")
	merged := h.MustRun(t, "ip", "-6", "route", "show", "default")
	if !strings.Contains(merged, "2001:db8:2::99") || !strings.Contains(merged, "proto 212") {
		t.Fatalf("the kernel did not merge the appended route into uplinkd's:\n%s", merged)
	}
	t.Logf("merged by the kernel:\n%s", merged)

	// isp1-v6 goes down: uplinkd would replace the route with one via
	// isp2-v6 alone, taking the foreign sibling with it.
	rec.Set(Desired(p, Snapshot{"isp1-v6": Down}))
	eventually(t, "conflict reported", 10*time.Second, func() (bool, string) {
		cs := rec.Conflicts()
		return len(cs) == 1 && cs[0].Route.Family == 6, h.MustRun(t, "ip", "-6", "route", "show", "default")
	})
	if got := h.MustRun(t, "ip", "-6", "route", "show", "default"); got != merged {
		t.Errorf("IPv6 default changed under a conflict:\nbefore:\n%s\nafter:\n%s", merged, got)
	}
	if err := h.Ping(t, "-6", "-c", "3", "-i", "0.2", "-W", "2", nstest.TargetAddr6.String()); err != nil {
		t.Errorf("ping -6 through the merged default: %v", err)
	}
	// Withdrawing would delete every sibling: refused too.
	if err := rec.Withdraw(context.Background()); err == nil {
		t.Errorf("Withdraw over a merged foreign nexthop succeeded")
	}
	if got := h.MustRun(t, "ip", "-6", "route", "show", "default"); !strings.Contains(got, "2001:db8:2::99") {
		t.Errorf("the foreign nexthop is gone after withdraw:\n%s", got)
	}
}

// Issue 11.6 and issue 19 on the real kernel: every gateway down with
// last_resort "keep", then eth2 is removed (the kernel drops the whole
// IPv4 multipath default with it), or its lease is released (its
// addresses flushed: a route via 198.18.2.1 is "network is unreachable").
// uplinkd must put back the member that can still exist, and traffic
// flows through it.
func TestKernelKeepWithImpossibleMember(t *testing.T) {
	for _, tc := range []struct{ name, cmd string }{
		{"interface removed", "ip link del eth2"},
		{"lease released", "ip addr flush dev eth2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tu := nstest.NewTwoUplinks(t)
			h := tu.Host
			p := labPolicyWith(t, "keep")
			rec := newLabReconciler(t, h, nil)
			defer startRun(t, context.Background(), rec)()
			allDown := Snapshot{"isp1": Down, "isp2": Down, "isp1-v6": Down, "isp2-v6": Down}
			rec.Set(Desired(p, allDown))
			eventually(t, "keep applied", 10*time.Second, func() (bool, string) {
				got := h.MustRun(t, "ip", "route", "show", "default")
				return strings.Contains(got, "nexthop via 198.18.2.1"), got
			})
			h.MustRun(t, strings.Fields(tc.cmd)...)
			eventually(t, "default via the remaining member", 10*time.Second, func() (bool, string) {
				got := h.MustRun(t, "ip", "route", "show", "default") + h.MustRun(t, "ip", "-6", "route", "show", "default")
				return strings.Contains(got, "default via 198.18.1.1 dev eth1 proto 212") &&
					strings.Contains(got, "default via 2001:db8:1::1 dev eth1 proto 212"), got
			})
			if err := h.Ping(t, "-c", "3", "-i", "0.2", "-W", "2", nstest.TargetAddr4.String()); err != nil {
				t.Errorf("ping with eth2's member gone: %v", err)
			}
			if err := h.Ping(t, "-6", "-c", "3", "-i", "0.2", "-W", "2", nstest.TargetAddr6.String()); err != nil {
				t.Errorf("ping -6 with eth2's member gone: %v", err)
			}
		})
	}
}
