package routingtest

import (
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/routing"
)

// The keying the scenario tests of package routing rely on.
func TestMemKernelKeying(t *testing.T) {
	k := NewMemKernel("eth1", "eth2", "eth3")
	r := func(fam int, gw, dev string, proto int, metric int) *netlink.Route {
		af := unix.AF_INET
		if fam == 6 {
			af = unix.AF_INET6
		}
		return &netlink.Route{Family: af, Protocol: netlink.RouteProtocol(proto), Gw: net.ParseIP(gw), LinkIndex: k.LinkIndex(dev), Priority: metric}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(k.RouteAdd(r(4, "198.18.1.1", "eth1", 212, 0)))
	if err := k.RouteAdd(r(4, "198.18.2.1", "eth2", 4, 0)); err != unix.EEXIST {
		t.Errorf("add on a taken key: %v, want EEXIST", err)
	}
	must(k.RouteAdd(r(4, "198.18.2.1", "eth2", 4, 10)))    // another metric: another key
	must(k.RoutePrepend(r(4, "198.18.3.1", "eth3", 4, 0))) // before ours
	must(k.RouteAppend(r(4, "198.18.2.1", "eth2", 16, 0))) // after ours
	if err := k.RouteAppend(r(4, "198.18.3.1", "eth3", 4, 0)); err != unix.EEXIST {
		t.Errorf("append of an identical route: %v, want EEXIST", err)
	}
	must(k.RouteAdd(r(6, "2001:db8:1::1", "eth1", 212, 0)))
	must(k.RouteAppend(r(6, "2001:db8:3::1", "eth3", 4, 0))) // merged
	must(k.RouteAdd(&netlink.Route{Family: unix.AF_INET6, Protocol: 4, LinkIndex: k.LinkIndex("eth2"), Priority: 1024, Dst: &net.IPNet{IP: net.ParseIP("2001:db8:9::"), Mask: net.CIDRMask(64, 128)}}))
	want := strings.Join([]string{
		"default via 198.18.3.1 dev eth3 table main proto 4",
		"default via 198.18.1.1 dev eth1 table main proto 212",
		"default via 198.18.2.1 dev eth2 table main proto 16",
		"default via 198.18.2.1 dev eth2 table main proto 4 metric 10",
		"-6 default table main proto 212 metric 1024 nexthop via 2001:db8:1::1 dev eth1 weight 1 nexthop via 2001:db8:3::1 dev eth3 weight 1",
		"-6 2001:db8:9::/64 dev eth2 table main proto 4 metric 1024",
	}, "\n") + "\n"
	if d := cmp.Diff(want, routing.Format(k.State())); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
	// A replace hits the first route on the key, whatever its protocol.
	must(k.RouteReplace(r(4, "198.18.1.1", "eth1", 212, 0)))
	// A delete naming a protocol and gateway takes one IPv6 sibling.
	must(k.RouteDel(&netlink.Route{Family: unix.AF_INET6, Protocol: 4, Gw: net.ParseIP("2001:db8:3::1")}))
	// Removing eth2 takes the IPv4 routes through it and the IPv6 one.
	k.DelLink("eth2")
	want = strings.Join([]string{
		"default via 198.18.1.1 dev eth1 table main proto 212",
		"default via 198.18.1.1 dev eth1 table main proto 212",
		"-6 default via 2001:db8:1::1 dev eth1 table main proto 212 metric 1024",
	}, "\n") + "\n"
	if d := cmp.Diff(want, routing.Format(k.State())); d != "" {
		t.Errorf("after replace, sibling delete and link removal (-want +got):\n%s", d)
	}
}
