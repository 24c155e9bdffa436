package routingtest

import (
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/routing"
)

// ip6DefaultMetric is the metric the kernel gives an IPv6 route written
// with none (IP6_RT_PRIO_USER).
const ip6DefaultMetric = 1024

// eventOf is what the kernel's notification says about r, a route in
// canonical form (family and destination set), as routing's watcher
// decodes it from RTM_NEWROUTE or RTM_DELROUTE.
func eventOf(r *netlink.Route, deleted bool) routing.RouteEvent {
	fam := 4
	if r.Family == unix.AF_INET6 {
		fam = 6
	}
	ev := routing.RouteEvent{Family: fam, Table: uint32(r.Table), Metric: uint32(r.Priority),
		Tos: uint8(r.Tos), Protocol: uint8(r.Protocol), Deleted: deleted}
	if a, ok := netip.AddrFromSlice(r.Dst.IP); ok {
		if fam == 4 {
			a = a.Unmap()
		}
		bits, _ := r.Dst.Mask.Size()
		ev.Dst = netip.PrefixFrom(a, bits).Masked()
	}
	return ev
}
