package daemon

import (
	"context"
	"fmt"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/internal/rtnl"
)

// netlinkVRFs is the production VRFDevices, in the daemon's network
// namespace.
type netlinkVRFs struct{}

// VRFs lists the links once: the VRF devices, then who is enslaved to
// each. A link dump is small; it never holds a routing table.
func (netlinkVRFs) VRFs() (map[string]VRF, error) {
	ls, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	byIndex := map[int]string{}
	out := map[string]VRF{}
	for _, l := range ls {
		if v, ok := l.(*netlink.Vrf); ok {
			byIndex[v.Index] = v.Name
			out[v.Name] = VRF{Table: v.Table}
		}
	}
	for _, l := range ls {
		if name, ok := byIndex[l.Attrs().MasterIndex]; ok {
			v := out[name]
			v.Members = append(v.Members, l.Attrs().Name)
			out[name] = v
		}
	}
	for name, v := range out {
		slices.Sort(v.Members)
		out[name] = v
	}
	return out, nil
}

// WatchLinks hints on every link change: a VRF created or deleted, an
// interface enslaved or released.
func (netlinkVRFs) WatchLinks(ctx context.Context, hint func()) error {
	return subscribeHints(ctx, "link", func(ch chan netlink.LinkUpdate, done chan struct{}, onErr func(error)) error {
		return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr, ReceiveBufferSize: 1 << 20})
	}, func(netlink.LinkUpdate) bool { return true }, hint)
}

// L3mdev dumps the rules once (a rule list is small).
func (netlinkVRFs) L3mdev() (map[int]bool, error) {
	c, err := rtnl.Dial(netns.None())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	fams, err := c.L3mdevFamilies()
	if err != nil {
		return nil, err
	}
	return map[int]bool{4: fams[unix.AF_INET], 6: fams[unix.AF_INET6]}, nil
}
