package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// netlinkAddresses is the production Addresses, in the daemon's network
// namespace.
type netlinkAddresses struct{}

func (netlinkAddresses) OnLink() (map[string][]netip.Prefix, error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	names := make(map[int]string, len(ls))
	out := make(map[string][]netip.Prefix, len(ls))
	for _, l := range ls {
		names[l.Attrs().Index] = l.Attrs().Name
		out[l.Attrs().Name] = nil
	}
	as, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}
	for _, a := range as {
		name, ok := names[a.LinkIndex]
		if !ok {
			continue
		}
		for _, n := range []*net.IPNet{a.IPNet, a.Peer} {
			if p, ok := prefixOf(n); ok {
				out[name] = append(out[name], p)
			}
		}
	}
	return out, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits).Masked(), true
}

func (netlinkAddresses) WatchAddresses(ctx context.Context, hint func()) error {
	return subscribeHints(ctx, "address", func(ch chan netlink.AddrUpdate, done chan struct{}, onErr func(error)) error {
		return netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr, ReceiveBufferSize: 1 << 20})
	}, func(netlink.AddrUpdate) bool { return true }, hint)
}
