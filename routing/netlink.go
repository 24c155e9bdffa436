package routing

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Netlink is the kernel boundary of the routing package. *netlink.Handle
// satisfies it as is; routingtest.MemKernel is the in-memory fake the tests
// use. Every conversion between this package's types and netlink's happens
// outside it, so tests through the fake run the production code path.
type Netlink interface {
	RouteListFilteredIter(family int, filter *netlink.Route, filterMask uint64, f func(netlink.Route) (cont bool)) error
	RouteAdd(route *netlink.Route) error
	RouteReplace(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
	RuleListFiltered(family int, filter *netlink.Rule, filterMask uint64) ([]netlink.Rule, error)
	RuleAdd(rule *netlink.Rule) error
	RuleDel(rule *netlink.Rule) error
	LinkList() ([]netlink.Link, error)
	// AddrList with a nil link lists the addresses of every interface:
	// which gateways are on-link where (see onLink).
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
}

func afOf(family int) int {
	if family == 6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

func familyOfAF(af int) int {
	if af == unix.AF_INET6 {
		return 6
	}
	return 4
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func netIP(a netip.Addr) net.IP {
	if !a.IsValid() {
		return nil
	}
	return net.IP(a.AsSlice())
}

func fromNetIP(ip net.IP) netip.Addr {
	if ip == nil {
		return netip.Addr{}
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

func fromIPNet(n *net.IPNet, family int) netip.Prefix {
	if n == nil || n.IP == nil {
		return netip.Prefix{}
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}
	}
	if family == 4 {
		a = a.Unmap()
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a, bits)
}

// links maps interface names and indexes, read once per reconcile, with
// the prefixes each interface's addresses make on-link.
type links struct {
	byName  map[string]int
	byIndex map[int]string
	onlink  map[string][]netip.Prefix
}

func readLinks(nl Netlink) (links, error) {
	ls, err := nl.LinkList()
	if err != nil {
		return links{}, fmt.Errorf("listing links: %w", err)
	}
	l := links{byName: make(map[string]int, len(ls)), byIndex: make(map[int]string, len(ls)), onlink: map[string][]netip.Prefix{}}
	for _, k := range ls {
		a := k.Attrs()
		l.byName[a.Name] = a.Index
		l.byIndex[a.Index] = a.Name
	}
	as, err := nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return links{}, fmt.Errorf("listing addresses: %w", err)
	}
	for _, a := range as {
		name, ok := l.byIndex[a.LinkIndex]
		if !ok {
			continue
		}
		fam := 4
		if a.IP.To4() == nil {
			fam = 6
		}
		for _, n := range []*net.IPNet{a.IPNet, a.Peer} {
			if p := fromIPNet(n, fam); p.IsValid() {
				l.onlink[name] = append(l.onlink[name], p.Masked())
			}
		}
	}
	return l, nil
}

// reachable reports whether the kernel accepts gw as a nexthop on dev: a
// link-local IPv6 router always is; any other gateway must lie in the
// prefix of an address of dev, or of its point-to-point peer. Otherwise
// the kernel refuses the route ("network is unreachable"), and refuses a
// whole multipath route for one such member: a released DHCP lease must
// not take the other uplinks' default with it.
func (l links) reachable(gw netip.Addr, dev string) bool { return OnLink(gw, l.onlink[dev]) }

// OnLink is the kernel's test of a gateway nexthop, for an interface
// whose addresses (and point-to-point peers) make prefixes on-link: a
// device route (no gateway) and an IPv6 link-local router always pass;
// any other gateway must lie in one of the prefixes. The daemon holds a
// gateway that fails it down; the reconciler never writes its nexthop.
func OnLink(gw netip.Addr, prefixes []netip.Prefix) bool {
	if !gw.IsValid() || gw.Is6() && gw.IsLinkLocalUnicast() {
		return true
	}
	for _, p := range prefixes {
		if p.Contains(gw) {
			return true
		}
	}
	return false
}

func (l links) index(name string) (int, error) {
	i, ok := l.byName[name]
	if !ok {
		return 0, fmt.Errorf("resolving interface %s: %w", name, errNoLink)
	}
	return i, nil
}

func (l links) name(index int) string {
	if n, ok := l.byIndex[index]; ok {
		return n
	}
	if index == 0 {
		return ""
	}
	return fmt.Sprintf("if%d", index)
}

var errNoLink = errors.New("no such interface")

// toNetlinkRoute builds the netlink form of a route. A single nexthop is
// sent as a plain route (RTA_GATEWAY/RTA_OIF), more as RTA_MULTIPATH with
// weight-1 in rtnh_hops, as the kernel expects.
func toNetlinkRoute(r Route, l links) (*netlink.Route, error) {
	nr := &netlink.Route{
		Family:   afOf(r.Family),
		Dst:      ipNet(r.Dst),
		Table:    int(r.Table),
		Priority: int(r.Metric),
		Tos:      int(r.Tos),
		Type:     int(r.Type),
		Protocol: netlink.RouteProtocol(r.Protocol),
		Src:      netIP(r.Src),
	}
	if nr.Type == 0 {
		nr.Type = unix.RTN_UNICAST
	}
	switch len(r.Nexthops) {
	case 0:
	case 1:
		nh := r.Nexthops[0]
		if nh.Dev != "" {
			i, err := l.index(nh.Dev)
			if err != nil {
				return nil, err
			}
			nr.LinkIndex = i
		}
		nr.Gw = netIP(nh.Gateway)
		if !nh.Gateway.IsValid() && r.Family == 4 {
			nr.Scope = netlink.SCOPE_LINK
		}
	default:
		for _, nh := range r.Nexthops {
			info := &netlink.NexthopInfo{Gw: netIP(nh.Gateway), Hops: max(nh.Weight, 1) - 1}
			if nh.Dev != "" {
				i, err := l.index(nh.Dev)
				if err != nil {
					return nil, err
				}
				info.LinkIndex = i
			}
			nr.MultiPath = append(nr.MultiPath, info)
		}
	}
	return nr, nil
}

// fromNetlinkRoute reads a kernel route into this package's form, keeping
// only what uplinkd sets: nexthop flags (onlink, dead, linkdown), scope,
// cache info and the device of reject routes are the kernel's business and
// must not make a restart see a difference.
func fromNetlinkRoute(nr netlink.Route, l links) Route {
	fam := familyOfAF(nr.Family)
	r := Route{
		Family:   fam,
		Table:    uint32(nr.Table),
		Metric:   uint32(nr.Priority),
		Tos:      uint8(nr.Tos),
		Type:     RouteType(nr.Type),
		Protocol: uint8(nr.Protocol),
		Src:      fromNetIP(nr.Src),
	}
	if nr.Dst != nil {
		r.Dst = fromIPNet(nr.Dst, fam)
	} else {
		r.Dst = defaultDst(fam)
	}
	if r.Type != Unicast {
		return r
	}
	if len(nr.MultiPath) > 0 {
		for _, nh := range nr.MultiPath {
			r.Nexthops = append(r.Nexthops, Nexthop{Gateway: fromNetIP(nh.Gw), Dev: l.name(nh.LinkIndex), Weight: nh.Hops + 1})
		}
	} else if nr.Gw != nil || nr.LinkIndex != 0 {
		r.Nexthops = []Nexthop{{Gateway: fromNetIP(nr.Gw), Dev: l.name(nr.LinkIndex)}}
	}
	r.Nexthops = normNexthops(r.Nexthops)
	return r
}

// KernelState reads every route (all tables, both families, any protocol)
// and rule in nl, for golden dumps and displays. Routes sharing a key keep
// the kernel's order, in which the first one carries traffic.
func KernelState(nl Netlink) (State, error) {
	l, err := readLinks(nl)
	if err != nil {
		return State{}, err
	}
	var s State
	err = nl.RouteListFilteredIter(netlink.FAMILY_ALL, &netlink.Route{}, netlink.RT_FILTER_TABLE, func(r netlink.Route) bool {
		if r.Family == unix.AF_INET || r.Family == unix.AF_INET6 {
			s.Routes = append(s.Routes, fromNetlinkRoute(r, l))
		}
		return true
	})
	if err != nil {
		return State{}, fmt.Errorf("dumping routes: %w", err)
	}
	rules, err := nl.RuleListFiltered(netlink.FAMILY_ALL, nil, 0)
	if err != nil {
		return State{}, fmt.Errorf("dumping rules: %w", err)
	}
	for _, r := range rules {
		s.Rules = append(s.Rules, fromNetlinkRule(r))
	}
	return Normalize(s), nil
}

// toNetlinkRule builds a rule; netlink.NewRule() sets the "absent" markers
// (-1) that a zero Rule{} would send as real values.
func toNetlinkRule(r Rule) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = afOf(r.Family)
	nr.Priority = int(r.Priority)
	nr.Table = int(r.Table)
	nr.Protocol = r.Protocol
	if r.From.IsValid() && r.From.Bits() > 0 {
		nr.Src = ipNet(r.From)
	}
	if r.To.IsValid() && r.To.Bits() > 0 {
		nr.Dst = ipNet(r.To)
	}
	if r.Mask != 0 {
		nr.Mark = r.Mark
		m := r.Mask
		nr.Mask = &m
	}
	nr.IifName = r.IIF
	return nr
}

func fromNetlinkRule(nr netlink.Rule) Rule {
	fam := familyOfAF(nr.Family)
	r := Rule{
		Family:   fam,
		Priority: uint32(nr.Priority),
		Table:    uint32(nr.Table),
		Protocol: nr.Protocol,
		IIF:      nr.IifName,
		Mark:     nr.Mark,
	}
	if nr.Src != nil {
		r.From = fromIPNet(nr.Src, fam)
	}
	if nr.Dst != nil {
		r.To = fromIPNet(nr.Dst, fam)
	}
	switch {
	case nr.Mask != nil:
		r.Mask = *nr.Mask
	case nr.Mark != 0:
		r.Mask = 0xffffffff
	}
	return r
}

// isExist and isGone classify the errors that mean "already as wanted".
func isExist(err error) bool { return errors.Is(err, unix.EEXIST) }
func isGone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}

// ToNetlinkRule is the library form of a rule as the reconciler writes it,
// for kernel models (routingtest.MemKernel's RuleBatch).
func ToNetlinkRule(r Rule) *netlink.Rule { return toNetlinkRule(r) }
