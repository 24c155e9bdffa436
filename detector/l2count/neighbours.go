package l2count

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetlinkNeighbours is the production Neighbours: rtnetlink in one
// namespace.
type NetlinkNeighbours struct{ h *netlink.Handle }

// OpenNeighbours returns the Neighbours of namespace ns (netns.None():
// the caller's). The handle ns is not owned.
func OpenNeighbours(ns netns.NsHandle) (*NetlinkNeighbours, error) {
	var h *netlink.Handle
	var err error
	if ns.IsOpen() {
		h, err = netlink.NewHandleAt(ns)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("opening netlink handle: %w", err)
	}
	return &NetlinkNeighbours{h: h}, nil
}

func (n *NetlinkNeighbours) LinkName(index int) (string, error) {
	l, err := n.h.LinkByIndex(index)
	if err != nil {
		return "", err
	}
	return l.Attrs().Name, nil
}

// nudValid are the states whose link-layer address the kernel sends to.
const nudValid = unix.NUD_PERMANENT | unix.NUD_NOARP | unix.NUD_REACHABLE | unix.NUD_PROBE | unix.NUD_STALE | unix.NUD_DELAY

func (n *NetlinkNeighbours) MACs(index int) (map[netip.Addr]net.HardwareAddr, error) {
	ns, err := n.h.NeighList(index, unix.AF_UNSPEC)
	if err != nil {
		return nil, err
	}
	return validMACs(ns), nil
}

func validMACs(ns []netlink.Neigh) map[netip.Addr]net.HardwareAddr {
	out := map[netip.Addr]net.HardwareAddr{}
	for _, e := range ns {
		a, ok := netip.AddrFromSlice(e.IP)
		if !ok || e.State&nudValid == 0 || len(e.HardwareAddr) == 0 {
			continue
		}
		out[a.Unmap()] = e.HardwareAddr
	}
	return out
}

// Close releases the netlink handle.
func (n *NetlinkNeighbours) Close() error {
	n.h.Close()
	return nil
}
