package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netlinkRoutes is the production DefaultRoutes: the daemon's own network
// namespace, every table.
type netlinkRoutes struct{}

// Defaults dumps, per interface, the routes through it in every table.
// The socket is strict (NETLINK_GET_STRICT_CHK): the kernel sends only
// the routes whose nexthops use that interface (RTA_OIF), so a BGP
// table of a million routes beside costs a walk in the kernel, not a
// million messages parsed here. Without strict checking (Linux < 4.20)
// everything is sent and defaultsOf filters, at the cost of a full dump.
func (netlinkRoutes) Defaults(ifaces []string) ([]DefaultRoute, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening netlink handle: %w", err)
	}
	defer h.Close()
	_ = h.SetStrictCheck(true)
	var out []DefaultRoute
	for _, name := range ifaces {
		l, err := h.LinkByName(name)
		if err != nil {
			continue // absent: the detector says so
		}
		idx := l.Attrs().Index
		// LinkIndex goes into the request as RTA_OIF, which a strict
		// kernel applies to every nexthop of a multipath route; the
		// library's own RT_FILTER_OIF would drop those (their LinkIndex
		// is 0), so defaultsOf picks the nexthops instead.
		filter := &netlink.Route{Table: unix.RT_TABLE_UNSPEC, LinkIndex: idx}
		err = h.RouteListFilteredIter(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_TABLE, func(r netlink.Route) bool {
			out = append(out, defaultsOf(r, idx, name)...)
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("listing routes on %s: %w", name, err)
		}
	}
	return out, nil
}

// defaultsOf is r's nexthops through the interface idx (name), if r is a
// unicast default route.
func defaultsOf(r netlink.Route, idx int, name string) []DefaultRoute {
	if !isDefault(r.Dst) || r.Type != unix.RTN_UNICAST {
		return nil
	}
	fam := 4
	if r.Family == unix.AF_INET6 {
		fam = 6
	}
	base := DefaultRoute{Family: fam, Table: uint32(r.Table), Protocol: uint8(r.Protocol), Metric: uint32(r.Priority), Dev: name}
	var out []DefaultRoute
	add := func(index int, gw net.IP) {
		if index != idx {
			return
		}
		d := base
		if a, ok := netip.AddrFromSlice(gw); ok {
			d.Gateway = a.Unmap()
		}
		out = append(out, d)
	}
	if len(r.MultiPath) > 0 {
		for _, nh := range r.MultiPath {
			add(nh.LinkIndex, nh.Gw)
		}
		return out
	}
	add(r.LinkIndex, r.Gw)
	return out
}

func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}

func (netlinkRoutes) WatchRoutes(ctx context.Context, hint func()) error {
	return subscribeHints(ctx, "route", func(ch chan netlink.RouteUpdate, done chan struct{}, onErr func(error)) error {
		return netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{ErrorCallback: onErr, ReceiveBufferSize: 1 << 20})
	}, func(u netlink.RouteUpdate) bool { return isDefault(u.Dst) }, hint)
}
