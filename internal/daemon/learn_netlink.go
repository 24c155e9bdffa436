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

func (netlinkRoutes) Defaults() ([]DefaultRoute, error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	names := make(map[int]string, len(ls))
	for _, l := range ls {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing routes: %w", err)
	}
	var out []DefaultRoute
	for _, r := range rs {
		if !isDefault(r.Dst) || r.Type != unix.RTN_UNICAST {
			continue
		}
		fam := 4
		if r.Family == unix.AF_INET6 {
			fam = 6
		}
		base := DefaultRoute{Family: fam, Table: uint32(r.Table), Protocol: uint8(r.Protocol), Metric: uint32(r.Priority)}
		add := func(index int, gw net.IP) {
			name, ok := names[index]
			if !ok {
				return
			}
			d := base
			d.Dev = name
			if a, ok := netip.AddrFromSlice(gw); ok {
				d.Gateway = a.Unmap()
			}
			out = append(out, d)
		}
		if len(r.MultiPath) > 0 {
			for _, nh := range r.MultiPath {
				add(nh.LinkIndex, nh.Gw)
			}
			continue
		}
		add(r.LinkIndex, r.Gw)
	}
	return out, nil
}

func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}

func (netlinkRoutes) WatchRoutes(ctx context.Context, hint func()) error {
	ch := make(chan netlink.RouteUpdate, 256)
	done := make(chan struct{})
	errc := make(chan error, 1)
	err := netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{
		ErrorCallback: func(err error) {
			select {
			case errc <- err:
			default:
			}
		},
		ReceiveBufferSize: 1 << 20,
	})
	if err != nil {
		return fmt.Errorf("subscribing to route updates: %w", err)
	}
	defer func() {
		close(done)
		for range ch {
		}
	}()
	hint() // changes before the subscription are read now
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case u, ok := <-ch:
			if !ok {
				return fmt.Errorf("route subscription closed")
			}
			if isDefault(u.Dst) {
				hint()
			}
		}
	}
}
