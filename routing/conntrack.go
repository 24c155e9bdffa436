package routing

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/uplinkd/uplinkd/policy"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ConntrackEntry is what a scoped flush looks at in a conntrack entry:
// where its reply direction goes, and its mark.
type ConntrackEntry struct {
	Family   int // 4 or 6
	Proto    uint8
	ReplyDst netip.Addr // the address replies are sent to: the SNAT address for a NATed flow
	Mark     uint32
}

// Conntrack is the kernel boundary of a scoped conntrack flush.
type Conntrack interface {
	// InterfaceAddrs returns the addresses of family (4 or 6) on iface.
	InterfaceAddrs(iface string, family int) ([]netip.Addr, error)
	// DeleteConntrack deletes the entries of family that match and
	// returns how many it deleted.
	DeleteConntrack(family int, match func(ConntrackEntry) bool) (int, error)
}

// ConntrackScope names one uplink's conntrack entries: those whose reply
// goes to one of SNAT, or whose mark matches Mark/Mask, or, with neither,
// whose reply goes to an address of Interface (what masquerade picks).
type ConntrackScope struct {
	Gateway   string
	Family    int
	SNAT      []netip.Addr
	Mark      uint32
	Mask      uint32
	Interface string
}

// Match names the selector in use: "snat", "mark" or "interface", by
// the policy's rule (policy.Conntrack.Match).
func (s ConntrackScope) Match() string {
	return policy.Conntrack{SNAT: s.SNAT, Mark: s.Mark, Mask: s.Mask}.Match()
}

// matcher returns the predicate of s, given the interface's addresses for
// the interface selector. A scope that selects nothing (an interface
// without addresses) returns nil: there is nothing to delete, and no dump
// is worth making for it.
func (s ConntrackScope) matcher(ifaceAddrs []netip.Addr) func(ConntrackEntry) bool {
	switch s.Match() {
	case "mark":
		mark, mask := s.Mark, s.Mask
		return func(e ConntrackEntry) bool { return e.Mark&mask == mark&mask }
	case "snat":
		return addrMatcher(s.Family, s.SNAT)
	}
	if len(ifaceAddrs) == 0 {
		return nil
	}
	return addrMatcher(s.Family, ifaceAddrs)
}

func addrMatcher(family int, addrs []netip.Addr) func(ConntrackEntry) bool {
	addrs = slices.Clone(addrs)
	return func(e ConntrackEntry) bool {
		return e.Family == family && slices.Contains(addrs, e.ReplyDst)
	}
}

// FlushConntrack deletes the conntrack entries of the uplink s names and
// returns how many. Call it only after the routes have changed: flushed
// first, the next packet of a flow would recreate the old mapping through
// the old route.
func FlushConntrack(ct Conntrack, s ConntrackScope) (int, error) {
	var addrs []netip.Addr
	if s.Match() == "interface" {
		var err error
		addrs, err = ct.InterfaceAddrs(s.Interface, s.Family)
		if err != nil {
			return 0, fmt.Errorf("flushing conntrack of gateway %s: reading addresses of %s: %w", s.Gateway, s.Interface, err)
		}
	}
	match := s.matcher(addrs)
	if match == nil {
		return 0, nil
	}
	n, err := ct.DeleteConntrack(s.Family, match)
	if err != nil {
		return n, fmt.Errorf("flushing conntrack of gateway %s (by %s): %w", s.Gateway, s.Match(), err)
	}
	return n, nil
}

// KernelConntrack is the production Conntrack of one network namespace,
// through vishvananda/netlink's conntrack API: one dump of the family's
// table, filtered here, and one delete per matching entry.
//
// It holds its own NETLINK_NETFILTER socket in the namespace: a handle
// without one would send conntrack requests through a socket of the
// calling thread's namespace instead, silently the wrong table.
type KernelConntrack struct {
	h    *netlink.Handle
	once sync.Once
}

// NewKernelConntrack opens the sockets of a KernelConntrack in ns
// (netns.None(): the current namespace).
func NewKernelConntrack(ns netns.NsHandle) (*KernelConntrack, error) {
	var h *netlink.Handle
	var err error
	if ns.IsOpen() {
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER, unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_NETFILTER, unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("opening conntrack netlink handle: %w", err)
	}
	return &KernelConntrack{h: h}, nil
}

// Close closes the sockets. It is idempotent.
func (k *KernelConntrack) Close() { k.once.Do(k.h.Close) }

// InterfaceAddrs implements Conntrack.
func (k *KernelConntrack) InterfaceAddrs(iface string, family int) ([]netip.Addr, error) {
	l, err := k.h.LinkByName(iface)
	if err != nil {
		return nil, err
	}
	as, err := k.h.AddrList(l, afOf(family))
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range as {
		if ip := fromNetIP(a.IP); ip.IsValid() && !ip.IsLinkLocalUnicast() {
			out = append(out, ip)
		}
	}
	return out, nil
}

// DeleteConntrack implements Conntrack. A dump the kernel interrupted
// still deletes what it saw; the error says the flush may be partial.
func (k *KernelConntrack) DeleteConntrack(family int, match func(ConntrackEntry) bool) (int, error) {
	fam := netlink.InetFamily(unix.AF_INET)
	if family == 6 {
		fam = unix.AF_INET6
	}
	n, err := k.h.ConntrackDeleteFilters(netlink.ConntrackTable, fam, flowMatcher{family: family, match: match})
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EOPNOTSUPP) {
		// No conntrack in this kernel or namespace: nothing to flush.
		return int(n), nil
	}
	return int(n), err
}

// flowMatcher adapts a ConntrackEntry predicate to the library's filter.
type flowMatcher struct {
	family int
	match  func(ConntrackEntry) bool
}

func (f flowMatcher) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	return f.match(ConntrackEntry{
		Family:   f.family,
		Proto:    flow.Forward.Protocol,
		ReplyDst: fromNetIP(flow.Reverse.DstIP),
		Mark:     flow.Mark,
	})
}
