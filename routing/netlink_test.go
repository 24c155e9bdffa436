package routing

import (
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func testLinks() links {
	return links{byName: map[string]int{"lo": 1, "eth1": 2, "eth2": 3}, byIndex: map[int]string{1: "lo", 2: "eth1", 3: "eth2"}}
}

// What the kernel adds to a dump (nexthop flags, scope, the lo device of
// reject routes, cache flags) must read back as the route uplinkd wrote,
// or a restart would rewrite everything.
func TestFromNetlinkRouteIgnoresKernelDetail(t *testing.T) {
	l := testLinks()
	for _, r := range []Route{
		mp(3, 1),
		own(201, gw1, "eth1"),
		{Family: 6, Table: 254, Dst: any6, Metric: 1024, Type: Unicast, Protocol: 212,
			Nexthops: []Nexthop{{Gateway: gw6, Dev: "eth1", Weight: 2}, {Gateway: netip.MustParseAddr("fe80::1"), Dev: "eth2", Weight: 1}}},
		{Family: 4, Table: 250, Dst: netip.MustParsePrefix("198.18.50.0/24"), Type: Blackhole, Protocol: 212},
		{Family: 4, Table: 254, Dst: netip.MustParsePrefix("198.18.60.0/24"), Type: Unicast, Protocol: 212, Nexthops: []Nexthop{{Dev: "eth2"}}},
	} {
		r = Normalize(State{Routes: []Route{r}}).Routes[0]
		nr, err := toNetlinkRoute(r, l)
		if err != nil {
			t.Fatal(err)
		}
		// Dress it up as a dump would.
		nr.Flags |= unix.RTNH_F_LINKDOWN
		for _, nh := range nr.MultiPath {
			nh.Flags |= unix.RTNH_F_DEAD | unix.RTNH_F_LINKDOWN
		}
		if r.Type != Unicast {
			nr.LinkIndex = 1
		}
		got := fromNetlinkRoute(*nr, l)
		if diff := cmp.Diff(RouteString(r), RouteString(got)); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
		if !routeEqual(r, got) {
			t.Errorf("round trip of %s not equal: %+v", RouteString(r), got)
		}
	}
}

func TestRuleRoundTrip(t *testing.T) {
	for _, r := range []Rule{
		srcRule(1000, 201),
		{Family: 4, Priority: 1050, Mark: 2, Mask: 0xff, Table: 202, Protocol: 212},
		{Family: 6, Priority: 1051, Mark: 7, Mask: 0xffffffff, Table: 70000, Protocol: 212},
		{Family: 4, Priority: 1052, To: netip.MustParsePrefix("198.18.50.0/24"), IIF: "eth9", Table: 300, Protocol: 212},
	} {
		nr := toNetlinkRule(r)
		if nr.Goto != -1 || nr.Flow != -1 || nr.SuppressPrefixlen != -1 {
			t.Errorf("rule not built from netlink.NewRule: %+v", nr)
		}
		if got := fromNetlinkRule(*nr); got != r {
			t.Errorf("round trip of %s: got %s", RuleString(r), RuleString(got))
		}
	}
	// The kernel reports a mark written without a mask with mask 0xffffffff;
	// a dump that carries only the mark means the same.
	nr := netlink.NewRule()
	nr.Family, nr.Priority, nr.Mark, nr.Table, nr.Protocol = unix.AF_INET, 1, 5, 9, 212
	if got := fromNetlinkRule(*nr); got.Mask != 0xffffffff {
		t.Errorf("mark without mask read as mask %#x", got.Mask)
	}
	// An IPv4 source in 16-byte form is still IPv4.
	nr.Src = &net.IPNet{IP: net.ParseIP("198.18.1.2"), Mask: net.CIDRMask(32, 32)}
	if got := fromNetlinkRule(*nr); got.From != netip.MustParsePrefix("198.18.1.2/32") {
		t.Errorf("source read as %v", got.From)
	}
}

// The library reports a receive overflow as text ("Receive failed: no
// buffer space available"), not as a wrapped errno; both must count as
// ENOBUFS so the resync is labelled right.
func TestIsENOBUFS(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{unix.ENOBUFS, true},
		{fmt.Errorf("receiving rule events: %w", unix.ENOBUFS), true},
		{fmt.Errorf("Receive failed: %v", unix.ENOBUFS), true},
		{fmt.Errorf("Receive failed: %v", unix.EBADF), false},
		{nil, false},
	} {
		if got := isENOBUFS(c.err); got != c.want {
			t.Errorf("isENOBUFS(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
