package daemon

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/detector"
	"github.com/uplinkd/uplinkd/routing"
)

const keepDualStack = `
[gateway.isp1]
address = "198.18.1.1"
interface = "eth1"
[gateway.isp2]
address = "198.18.2.1"
interface = "eth2"
[gateway.v6a]
address = "2001:db8:1::1"
interface = "eth1"
[gateway.v6b]
address = "2001:db8:2::1"
interface = "eth2"
[group.wan]
gateways = ["isp1", "isp2"]
last_resort = "keep"
[group.wan6]
gateways = ["v6a", "v6b"]
last_resort = "keep"
`

// Issue 11, items 5 and 6, through the daemon's loop: another program
// appends an IPv6 nexthop, which the kernel merges into uplinkd's
// multipath default; then every gateway goes down and eth2 is removed,
// which takes the IPv4 multipath default with it and the IPv6 sibling
// through eth2. With last_resort "keep" the host keeps a default route in
// both families: uplinkd writes the IPv4 member that can still exist, and
// leaves the IPv6 route, which holds the foreign nexthop, as the kernel
// left it, reporting the conflict instead.
func TestCoreKeepVanishedInterfaceBesideForeignNexthop(t *testing.T) {
	p := mustParse(t, keepDualStack)
	h := newHarness(t, p)
	if d := cmp.Diff(strings.Join([]string{
		"default table main proto 212 nexthop via 198.18.1.1 dev eth1 weight 1 nexthop via 198.18.2.1 dev eth2 weight 1",
		"-6 default table main proto 212 metric 1024 nexthop via 2001:db8:1::1 dev eth1 weight 1 nexthop via 2001:db8:2::1 dev eth2 weight 1",
	}, "\n")+"\n", h.kernelDump()); d != "" {
		t.Fatalf("initial kernel (-want +got):\n%s", d)
	}

	h.kernel.AddLink("eth3")
	foreign := &netlink.Route{Family: unix.AF_INET6, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC, Priority: 1024,
		Gw: net.ParseIP("2001:db8:3::1"), LinkIndex: h.kernel.LinkIndex("eth3"), Type: unix.RTN_UNICAST}
	if err := h.kernel.RouteAppend(foreign); err != nil {
		t.Fatalf("ip -6 route append, as another program: %v", err)
	}
	h.waitFor("the merged nexthop reported as a conflict", func() bool { return len(h.core.Status().Conflicts) == 1 })

	for _, gw := range []string{"isp1", "isp2", "v6a", "v6b"} {
		h.det.send(gw, detector.Unknown, detector.Up, "neighbour reachable")
		h.det.send(gw, detector.Up, detector.Down, "3 probes lost")
	}
	h.kernel.DelLink("eth2")

	want := strings.Join([]string{
		"default via 198.18.1.1 dev eth1 table main proto 212",
		"-6 default table main proto 212 metric 1024 nexthop via 2001:db8:1::1 dev eth1 weight 1 nexthop via 2001:db8:3::1 dev eth3 weight 1",
	}, "\n") + "\n"
	h.waitFor("a default route in each family", func() bool { return h.kernelDump() == want })
	// Settled: nothing more is written, by Run's pending resyncs (a
	// duplicate would show within 200 ms) or by one more reconcile of the
	// same health, and the conflict stays reported while the foreign
	// nexthop is there.
	writes := h.rec.Writes()
	time.Sleep(200 * time.Millisecond)
	allDown := routing.Snapshot{"isp1": routing.Down, "isp2": routing.Down, "v6a": routing.Down, "v6b": routing.Down}
	if _, err := h.rec.Apply(t.Context(), routing.Desired(p, allDown)); err == nil || !strings.Contains(err.Error(), "foreign") {
		t.Errorf("Apply over the merged foreign nexthop: err = %v, want the conflict", err)
	}
	if d := cmp.Diff(want, h.kernelDump()); d != "" {
		t.Errorf("kernel after a resync (-want +got):\n%s", d)
	}
	if got := h.rec.Writes() - writes; got != 0 {
		t.Errorf("%d writes once settled, want 0", got)
	}
	cs := h.core.Status().Conflicts
	if len(cs) != 1 || !strings.HasPrefix(cs[0], "! -6 default") {
		t.Errorf("conflicts %q, want the IPv6 default", cs)
	}

	// The other program takes its nexthop back: uplinkd resumes and
	// keeps the IPv6 member that can still exist.
	if err := h.kernel.RouteDel(foreign); err != nil {
		t.Fatal(err)
	}
	want = strings.Join([]string{
		"default via 198.18.1.1 dev eth1 table main proto 212",
		"-6 default via 2001:db8:1::1 dev eth1 table main proto 212 metric 1024",
	}, "\n") + "\n"
	h.waitFor("uplinkd's IPv6 default alone", func() bool { return h.kernelDump() == want })
	h.waitFor("the conflict to clear", func() bool { return len(h.core.Status().Conflicts) == 0 })
}
