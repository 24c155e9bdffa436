package routing_test

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uplinkd/uplinkd/routing"
	"github.com/uplinkd/uplinkd/routing/routingtest"
)

const fourGateways = `
[gateway.g1]
address = "198.18.1.1"
interface = "eth1"
[gateway.g2]
address = "198.18.2.1"
interface = "eth2"
weight = 3
[gateway.g3]
address = "198.18.3.1"
interface = "eth3"
[group.wan]
gateways = ["g1", "g2", "g3"]
buckets = 64
idle_timer = "30s"
`

func nhReconciler(t *testing.T, k *routingtest.MemKernel) *routing.Reconciler {
	t.Helper()
	rec, err := routing.NewReconciler(routing.Config{Netlink: k, Nexthops: k, Watcher: silentWatcher{}, Protocol: 212, ResyncEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() })
	return rec
}

func nexthopDump(k *routingtest.MemKernel) string {
	var b strings.Builder
	for _, o := range k.NexthopObjects() {
		b.WriteString(routing.NexthopString(o))
		b.WriteByte('\n')
	}
	return b.String()
}

// TestNexthopScenario runs the reconciler over MemKernel's nexthop
// objects: the first apply builds them, a restart adopts them with zero
// writes, a failure is one group replace (and the dead gateway's object
// deleted) with no route write, a hand-deleted group (which takes its
// route with it) is rebuilt, and a foreign object in uplinkd's band is
// skipped and left alone.
func TestNexthopScenario(t *testing.T) {
	k := routingtest.NewMemKernel("eth1", "eth2", "eth3")
	p := mustPolicy(t, fourGateways)
	up, down := routing.Desired(p, nil), routing.Desired(p, routing.Snapshot{"g1": routing.Down})
	ctx := context.Background()

	// A foreign object sits where the group's first slot would be.
	slot := routing.GroupSlot("group/wan", 4)
	if err := k.WriteNexthop(routing.OpAdd, routing.NexthopObj{ID: slot, Family: 4, Protocol: 4, Gateway: netip.MustParseAddr("198.18.2.1"), Dev: "eth2"}); err != nil {
		t.Fatal(err)
	}
	rec := nhReconciler(t, k)
	w, err := rec.Apply(ctx, up)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Form() != routing.FormResilient {
		t.Fatalf("form %s", rec.Form())
	}
	if w != 5 {
		t.Errorf("first apply: %d writes, want 5 (3 gateways, the group, the route)", w)
	}
	dump := nexthopDump(k)
	for _, want := range []string{"via 198.18.1.1 dev eth1 proto 212", "via 198.18.2.1 dev eth2 proto 4",
		"type resilient buckets 64 idle_timer 30 unbalanced_timer 0 proto 212"} {
		if !strings.Contains(dump, want) {
			t.Errorf("nexthop objects lack %q:\n%s", want, dump)
		}
	}
	if strings.Contains(dump, "id "+strconv.FormatUint(uint64(slot), 10)+" group") {
		t.Errorf("the group took the foreign object's id %d:\n%s", slot, dump)
	}
	route := nhKernelDump(k)
	if !strings.Contains(route, "default nhid ") || !strings.Contains(route, "nexthop via 198.18.2.1 dev eth2 weight 3") {
		t.Errorf("kernel routes:\n%s", route)
	}

	// Restart: adopted, zero writes.
	if w, err := nhReconciler(t, k).Apply(ctx, up); err != nil || w != 0 {
		t.Errorf("restart: %d writes, err %v; want 0", w, err)
	}

	// g1 down: the group is replaced, the route is not written.
	before := nhKernelDump(k)
	w, err = rec.Apply(ctx, down)
	if err != nil || w < 1 || w > 2 {
		t.Errorf("g1 down: %d writes, err %v; want 1-2", w, err)
	}
	if strings.Contains(nhKernelDump(k), "198.18.1.1") {
		t.Errorf("g1 still routed:\n%s", nhKernelDump(k))
	}
	if nhidOf(before) != nhidOf(nhKernelDump(k)) {
		t.Errorf("the route moved to another group: %q then %q", nhidOf(before), nhidOf(nhKernelDump(k)))
	}

	// Drift: someone deletes the group; the kernel deletes its route.
	var group routing.NexthopObj
	for _, o := range k.NexthopObjects() {
		if o.IsGroup() && o.Protocol == 212 {
			group = o
		}
	}
	if err := k.WriteNexthop(routing.OpDelete, group); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(nhKernelDump(k), "default") {
		t.Fatalf("the group's route survived its group:\n%s", nhKernelDump(k))
	}
	if w, err := rec.Apply(ctx, down); err != nil || w != 2 {
		t.Errorf("repair: %d writes, err %v; want 2 (group, route)", w, err)
	}
	if !strings.Contains(nhKernelDump(k), "default nhid") {
		t.Errorf("not repaired:\n%s", nhKernelDump(k))
	}
	if !strings.Contains(nexthopDump(k), "via 198.18.2.1 dev eth2 proto 4") {
		t.Errorf("the foreign object changed:\n%s", nexthopDump(k))
	}

	// Withdraw removes every owned object and leaves the foreign one.
	if err := rec.Withdraw(ctx); err != nil {
		t.Fatal(err)
	}
	if d := nexthopDump(k); strings.Contains(d, "proto 212") || !strings.Contains(d, "proto 4") {
		t.Errorf("after withdraw:\n%s", d)
	}
}

// TestNexthopFallback: a kernel without resilient groups gets plain
// nexthop groups, one without nexthop objects classic routes, and the
// reconciler says which.
func TestNexthopFallback(t *testing.T) {
	p := mustPolicy(t, fourGateways)
	for _, tt := range []struct {
		kernel routing.Form
		route  string
		objs   bool
	}{
		{routing.FormGroup, "default nhid ", true},
		{routing.FormClassic, "default table main proto 212 nexthop via 198.18.1.1", false},
	} {
		k := routingtest.NewMemKernel("eth1", "eth2", "eth3")
		k.SetNexthopForm(tt.kernel)
		rec := nhReconciler(t, k)
		if _, err := rec.Apply(context.Background(), routing.Desired(p, nil)); err != nil {
			t.Fatal(err)
		}
		if rec.Form() != tt.kernel {
			t.Errorf("kernel offering %s: form %s", tt.kernel, rec.Form())
		}
		if got := nhKernelDump(k); !strings.Contains(got, tt.route) {
			t.Errorf("kernel offering %s: routes\n%s", tt.kernel, got)
		}
		if d := nexthopDump(k); (d != "") != tt.objs || strings.Contains(d, "resilient") {
			t.Errorf("kernel offering %s: objects\n%s", tt.kernel, d)
		}
	}
}

func nhidOf(dump string) string {
	i := strings.Index(dump, "nhid ")
	if i < 0 {
		return ""
	}
	return strings.Fields(dump[i:])[1]
}

// nhKernelDump is routing.Format of the kernel's routes, with the nexthop group of
// each route through one (which State, read the library's way, lacks).
func nhKernelDump(k *routingtest.MemKernel) string {
	st := k.State()
	for _, fam := range []int{4, 6} {
		ids, _ := k.RouteNHIDs(fam, 212)
		for i := range st.Routes {
			if id, ok := ids[st.Routes[i].Key()]; ok {
				st.Routes[i].NHID = id
			}
		}
	}
	return routing.Format(st)
}

// TestNexthopFallbackOnRefusal: a kernel that offers resilient groups but
// refuses them fails one reconcile, after which the reconciler builds
// plain nexthop groups and says so.
func TestNexthopFallbackOnRefusal(t *testing.T) {
	k := routingtest.NewMemKernel("eth1", "eth2", "eth3")
	k.RefuseResilient()
	rec := nhReconciler(t, k)
	up := routing.Desired(mustPolicy(t, fourGateways), nil)
	if _, err := rec.Apply(context.Background(), up); err == nil {
		t.Fatal("the refused resilient group was not an error")
	}
	if rec.Form() != routing.FormGroup {
		t.Fatalf("form after the refusal: %s, want mpath", rec.Form())
	}
	if _, err := rec.Apply(context.Background(), up); err != nil {
		t.Fatal(err)
	}
	if d := nexthopDump(k); !strings.Contains(d, " group ") || strings.Contains(d, "resilient") {
		t.Errorf("objects after the fallback:\n%s", d)
	}
	if !strings.Contains(nhKernelDump(k), "default nhid ") {
		t.Errorf("routes after the fallback:\n%s", nhKernelDump(k))
	}
}
