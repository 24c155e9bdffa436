package routingtest

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/routing"
)

// MemKernel is an in-memory routing table and rule list that implements
// routing.Netlink and routing.Watcher with the kernel's semantics as uplinkd meets them
// (net/ipv4/fib_trie.c, net/ipv6/ip6_fib.c):
//
//   - A route's key is (family, table, dst, metric) and, for IPv4, tos.
//     Several routes can share a key: `ip route prepend` and `append`
//     (NLM_F_CREATE without NLM_F_EXCL) add one before or after those
//     already there, refused only when an identical route exists. They
//     differ in protocol, type or nexthops; the first one carries traffic.
//   - RouteAdd (NLM_F_EXCL) meets EEXIST on a key that holds any route.
//   - RouteReplace replaces the first route on the key whatever its
//     protocol: that is how a replace takes over a foreign route.
//   - IPv6 merges instead: a route with a gateway added without
//     NLM_F_EXCL to a key holding a route with a gateway becomes one more
//     nexthop (a sibling) of that route, whatever its protocol, and a dump
//     shows one multipath route with the first sibling's protocol. A
//     replace of it replaces every sibling; a delete naming a gateway
//     removes only that sibling.
//   - Deletes honour protocol, type and gateway when given; IPv6 metric 0
//     is stored as 1024; rules are matched on every selector.
//   - Removing a link removes an IPv4 route that has a nexthop through it
//     (the whole multipath route) and the IPv6 siblings through it.
//
// Fail injects errors on chosen operations. MemKernel exists so that
// scenario tests run the production code path without root.
type MemKernel struct {
	mu       sync.Mutex
	links    []netlink.Link
	nextLink int
	// addrs holds the addresses of the links SetAddrs was called for; a
	// link without an entry is on-link for every gateway (see SetAddrs).
	addrs    map[int][]netip.Prefix
	routes   []memRoute
	rules    []netlink.Rule
	watchers map[chan struct{}]func(routing.RouteEvent) bool
	dumped   int
	faults   map[MemOp]*fault
	nh       nexthopMem
}

// memRoute is one kernel route. protos holds, for an IPv6 route with
// merged siblings, the protocol of each nexthop in MultiPath order; the
// embedded Route's Protocol is the first sibling's, as a dump shows it.
type memRoute struct {
	netlink.Route
	protos []netlink.RouteProtocol
	nhid   uint32           // the nexthop group the route goes through; 0: none
	nhKey  routing.RouteKey // the route's key as routing names it, for RouteNHIDs
}

// MemOp names an operation of MemKernel that Fail can make fail.
type MemOp string

// The operations of MemKernel, as Fail names them.
const (
	OpRouteAdd     MemOp = "route add"
	OpRouteReplace MemOp = "route replace"
	OpRouteDel     MemOp = "route delete"
	OpRouteDump    MemOp = "route dump"
	OpRuleAdd      MemOp = "rule add"
	OpRuleDel      MemOp = "rule delete"
	OpNexthopWrite MemOp = "nexthop write"
	OpRuleDump     MemOp = "rule dump"
	OpLinkList     MemOp = "link list"
)

type fault struct {
	err   error
	times int // < 0: until cleared
}

// Fail makes the next times calls of op fail with err, or every call
// when times < 0, without changing anything, as the kernel does for
// EPERM, ENETUNREACH, ENOMEM or EBUSY. Fail(op, nil, 0) clears it.
func (k *MemKernel) Fail(op MemOp, err error, times int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil || times == 0 {
		delete(k.faults, op)
		return
	}
	k.faults[op] = &fault{err: err, times: times}
}

// failing returns the injected error of op, if any, and counts it; mu held.
func (k *MemKernel) failing(op MemOp) error {
	f := k.faults[op]
	if f == nil {
		return nil
	}
	if f.times > 0 {
		if f.times--; f.times == 0 {
			delete(k.faults, op)
		}
	}
	return f.err
}

// NewMemKernel returns a fake kernel with the named links (index 1 is lo,
// the names get 2, 3, ...).
func NewMemKernel(linkNames ...string) *MemKernel {
	k := &MemKernel{watchers: map[chan struct{}]func(routing.RouteEvent) bool{}, faults: map[MemOp]*fault{}, addrs: map[int][]netip.Prefix{}}
	k.AddLink("lo")
	for _, n := range linkNames {
		k.AddLink(n)
	}
	return k
}

// AddLink adds a link and returns its index. Indexes are never reused.
func (k *MemKernel) AddLink(name string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.nextLink++
	k.links = append(k.links, &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name, Index: k.nextLink}})
	k.notify(nil, false)
	return k.nextLink
}

// DelLink removes a link as `ip link del` does: an IPv4 route with a
// nexthop through it goes, whole, and so does each IPv6 sibling through it.
func (k *MemKernel) DelLink(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	idx := k.linkIndex(name)
	if idx == 0 {
		return
	}
	k.links = slices.DeleteFunc(k.links, func(l netlink.Link) bool { return l.Attrs().Index == idx })
	k.dropLink(idx, true)
}

// SetAddrs gives the named link exactly these addresses (address/prefix
// length), as `ip addr flush dev X` then `ip addr add` would; none leaves
// it with no address at all. From then on the kernel refuses a route
// whose gateway on that link lies in none of their prefixes, as the real
// one does (ENETUNREACH, "network is unreachable"; an IPv6 link-local
// gateway is always accepted). A link SetAddrs was never called for
// reports the addresses 0.0.0.0/0 and ::/0: every gateway is on-link, so
// that tests about something else need not configure subnets.
func (k *MemKernel) SetAddrs(name string, addrs ...netip.Prefix) {
	k.mu.Lock()
	defer k.mu.Unlock()
	idx := k.linkIndex(name)
	if idx == 0 {
		return
	}
	k.addrs[idx] = slices.Clone(addrs)
	if k.addrs[idx] == nil {
		k.addrs[idx] = []netip.Prefix{}
	}
	// The kernel takes a route whose gateway left with the subnet out of
	// service (fib_disable_ip: deleted, or its nexthop marked dead); the
	// model deletes it.
	out := k.routes[:0]
	for _, r := range k.routes {
		if k.reachableAll(&r.Route) {
			out = append(out, r)
		}
	}
	k.routes = out
	k.notify(nil, true)
}

// linkAddrs is the address list of link idx; mu held.
func (k *MemKernel) linkAddrs(idx int) []netip.Prefix {
	if a, ok := k.addrs[idx]; ok {
		return a
	}
	return []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
}

// reachable is the kernel's check of a gateway nexthop (fib_check_nh):
// the gateway must lie on a subnet of the link; mu held.
func (k *MemKernel) reachable(gw net.IP, idx int) bool {
	a, ok := netip.AddrFromSlice(gw)
	if gw == nil || !ok {
		return true
	}
	a = a.Unmap()
	if a.Is6() && a.IsLinkLocalUnicast() {
		return true
	}
	return slices.ContainsFunc(k.linkAddrs(idx), func(p netip.Prefix) bool { return p.Contains(a) })
}

// reachableAll reports whether every gateway nexthop of r is reachable.
func (k *MemKernel) reachableAll(r *netlink.Route) bool {
	if len(r.MultiPath) == 0 {
		return k.reachable(r.Gw, r.LinkIndex)
	}
	for _, nh := range r.MultiPath {
		if !k.reachable(nh.Gw, nh.LinkIndex) {
			return false
		}
	}
	return true
}

// AddrList implements Netlink: the addresses of one link, or of every
// link when link is nil, of one family or both (FAMILY_ALL).
func (k *MemKernel) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []netlink.Addr
	for _, l := range k.links {
		idx := l.Attrs().Index
		if link != nil && link.Attrs().Index != idx {
			continue
		}
		for _, p := range k.linkAddrs(idx) {
			if family == unix.AF_INET && !p.Addr().Is4() || family == unix.AF_INET6 && !p.Addr().Is6() {
				continue
			}
			out = append(out, netlink.Addr{LinkIndex: idx,
				IPNet: &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}})
		}
	}
	return out, nil
}

// LinkIndex returns the index of the named link, 0 if there is none.
func (k *MemKernel) LinkIndex(name string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.linkIndex(name)
}

// Watchers returns how many Watch calls are subscribed, so that a test
// can wait for one before it changes what the watcher should see.
func (k *MemKernel) Watchers() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.watchers)
}

func (k *MemKernel) linkIndex(name string) int {
	for _, l := range k.links {
		if l.Attrs().Name == name {
			return l.Attrs().Index
		}
	}
	return 0
}

// dropLink removes what a link takes with it; mu held. IPv6 siblings
// through it go alone when siblings is set (link removal), whole routes
// otherwise (FlushLink, a carrier loss).
func (k *MemKernel) dropLink(idx int, siblings bool) {
	out := k.routes[:0]
	for _, r := range k.routes {
		if r.LinkIndex == idx {
			continue
		}
		if siblings && r.Family == unix.AF_INET6 && len(r.MultiPath) > 0 {
			r = r.without(func(nh *netlink.NexthopInfo, _ netlink.RouteProtocol) bool { return nh.LinkIndex == idx })
			if len(r.MultiPath) == 0 && r.Gw == nil {
				continue
			}
		} else if slices.ContainsFunc(r.MultiPath, func(nh *netlink.NexthopInfo) bool { return nh.LinkIndex == idx }) {
			continue
		}
		out = append(out, r)
	}
	k.routes = out
	// The kernel sends no route notification for what a link takes down
	// with it (IPv4); the link event is what tells.
	k.notify(nil, false)
}

// without returns r less the nexthops drop selects; a multipath route
// left with one nexthop becomes a plain one.
func (r memRoute) without(drop func(*netlink.NexthopInfo, netlink.RouteProtocol) bool) memRoute {
	var mp []*netlink.NexthopInfo
	var protos []netlink.RouteProtocol
	for i, nh := range r.MultiPath {
		if !drop(nh, r.protoOf(i)) {
			mp = append(mp, nh)
			protos = append(protos, r.protoOf(i))
		}
	}
	r.MultiPath, r.protos = mp, protos
	if len(mp) == 1 {
		r.Gw, r.LinkIndex, r.Protocol = mp[0].Gw, mp[0].LinkIndex, protos[0]
		r.MultiPath, r.protos = nil, nil
	} else if len(mp) > 1 {
		r.Protocol = protos[0]
	}
	return r
}

func (r memRoute) protoOf(i int) netlink.RouteProtocol {
	if i < len(r.protos) {
		return r.protos[i]
	}
	return r.Protocol
}

// notify wakes the watchers. route is the route that changed, nil for a
// rule or link change, which no filter applies to.
func (k *MemKernel) notify(route *netlink.Route, deleted bool) {
	var ev routing.RouteEvent
	if route != nil {
		ev = eventOf(route, deleted)
	}
	for c, keep := range k.watchers {
		if route != nil && keep != nil && !keep(ev) {
			continue
		}
		select {
		case c <- struct{}{}:
		default:
		}
	}
}

// Watch implements Watcher: every change of rules and links, and of the
// routes in finds relevant, is a hint.
func (k *MemKernel) Watch(ctx context.Context, hints chan<- routing.Hint, in routing.Interest) error {
	var keep func(routing.RouteEvent) bool // nil keeps every event
	if in != nil {
		keep = in.Relevant
	}
	// Buffered with one signal already in it: like KernelWatcher, a
	// subscription hints once it is up, for what changed before.
	c := make(chan struct{}, 1)
	c <- struct{}{}
	k.mu.Lock()
	k.watchers[c] = keep
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		delete(k.watchers, c)
		k.mu.Unlock()
	}()
	missed := true // the first hint stands for what changed before
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c:
			select {
			case hints <- routing.Hint{Reason: routing.ReasonEvent, What: "route", Missed: missed}:
				missed = false
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// LinkList implements Netlink.
func (k *MemKernel) LinkList() ([]netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failing(OpLinkList); err != nil {
		return nil, err
	}
	return slices.Clone(k.links), nil
}

func (k *MemKernel) linkOK(i int) bool {
	return slices.ContainsFunc(k.links, func(l netlink.Link) bool { return l.Attrs().Index == i })
}

type memKey struct {
	family, table, prio, tos int
	dst                      string
}

func routeKeyOf(r *netlink.Route) memKey {
	dst := ""
	if r.Dst != nil {
		dst = r.Dst.String()
	} else if r.Family == unix.AF_INET6 {
		dst = "::/0"
	} else {
		dst = "0.0.0.0/0"
	}
	tos := r.Tos
	if r.Family == unix.AF_INET6 {
		tos = 0 // IPv6 has no tos in its key
	}
	return memKey{r.Family, r.Table, r.Priority, tos, dst}
}

// canonical fills in what the kernel fills in.
func (k *MemKernel) canonical(r *netlink.Route) (netlink.Route, error) {
	c := *r
	if c.Family == 0 && c.Dst != nil {
		if c.Dst.IP.To4() != nil {
			c.Family = unix.AF_INET
		} else {
			c.Family = unix.AF_INET6
		}
	}
	if c.Table == 0 {
		c.Table = unix.RT_TABLE_MAIN
	}
	if c.Family == unix.AF_INET6 && c.Priority == 0 {
		c.Priority = ip6DefaultMetric
	}
	if c.Dst == nil {
		if c.Family == unix.AF_INET6 {
			c.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		} else {
			c.Dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
		}
	}
	if c.Type == 0 {
		c.Type = unix.RTN_UNICAST
	}
	if c.Type != unix.RTN_UNICAST {
		// Reject routes keep no nexthop; the kernel shows them on lo.
		c.Gw, c.MultiPath, c.LinkIndex = nil, nil, 1
		return c, nil
	}
	if len(c.MultiPath) == 0 && c.LinkIndex != 0 && !k.linkOK(c.LinkIndex) {
		return c, unix.ENODEV
	}
	if !k.reachableAll(&c) {
		return c, unix.ENETUNREACH
	}
	mp := make([]*netlink.NexthopInfo, 0, len(c.MultiPath))
	for _, nh := range c.MultiPath {
		if !k.linkOK(nh.LinkIndex) {
			return c, unix.ENODEV
		}
		n := *nh
		mp = append(mp, &n)
	}
	if len(mp) > 0 {
		c.MultiPath = mp
	}
	return c, nil
}

// span returns the indexes of the first and last route on key, -1 if none.
func (k *MemKernel) span(key memKey) (first, last int) {
	first, last = -1, -1
	for i := range k.routes {
		if routeKeyOf(&k.routes[i].Route) == key {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	return first, last
}

// writeMode is how a route write treats the routes already on its key.
type writeMode int

const (
	modeExcl    writeMode = iota // NLM_F_CREATE|NLM_F_EXCL: ip route add
	modeReplace                  // NLM_F_CREATE|NLM_F_REPLACE: ip route replace
	modePrepend                  // NLM_F_CREATE: ip route prepend
	modeAppend                   // NLM_F_CREATE|NLM_F_APPEND: ip route append
)

func (k *MemKernel) writeRoute(op MemOp, r *netlink.Route, mode writeMode) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failing(op); err != nil {
		return err
	}
	c, err := k.canonical(r)
	if err != nil {
		return err
	}
	nr := memRoute{Route: c}
	first, last := k.span(routeKeyOf(&c))
	switch {
	case first < 0:
		k.routes = append(k.routes, nr)
	case mode == modeExcl:
		return unix.EEXIST
	case mode == modeReplace:
		k.routes[first] = nr // siblings and all
	case c.Family == unix.AF_INET6 && hasGateway(&c) && hasGateway(&k.routes[first].Route):
		return k.routes[first].merge(c)
	case slices.ContainsFunc(k.routes[first:last+1], func(h memRoute) bool { return sameRoute(&h.Route, &c) }):
		return unix.EEXIST
	case mode == modePrepend:
		k.routes = slices.Insert(k.routes, first, nr)
	default:
		k.routes = slices.Insert(k.routes, last+1, nr)
	}
	k.notify(&c, false)
	return nil
}

// hasGateway reports whether an IPv6 route qualifies for ECMP
// (fib6_qualify_for_ecmp): it has a gateway on every nexthop.
func hasGateway(r *netlink.Route) bool {
	if len(r.MultiPath) == 0 {
		return r.Type == unix.RTN_UNICAST && r.Gw != nil
	}
	for _, nh := range r.MultiPath {
		if nh.Gw == nil {
			return false
		}
	}
	return true
}

func nexthopsOf(r *netlink.Route) []*netlink.NexthopInfo {
	if len(r.MultiPath) > 0 {
		return r.MultiPath
	}
	return []*netlink.NexthopInfo{{LinkIndex: r.LinkIndex, Gw: r.Gw}}
}

// merge adds c's nexthops to h as siblings (fib6_add_rt2node); a nexthop
// already there is EEXIST.
func (h *memRoute) merge(c netlink.Route) error {
	have, add := nexthopsOf(&h.Route), nexthopsOf(&c)
	for _, n := range add {
		if slices.ContainsFunc(have, func(o *netlink.NexthopInfo) bool { return o.Gw.Equal(n.Gw) && o.LinkIndex == n.LinkIndex }) {
			return unix.EEXIST
		}
	}
	protos := make([]netlink.RouteProtocol, 0, len(have)+len(add))
	for i := range have {
		protos = append(protos, h.protoOf(i))
	}
	for range add {
		protos = append(protos, c.Protocol)
	}
	h.MultiPath = append(slices.Clone(have), add...)
	h.Gw, h.LinkIndex, h.protos = nil, 0, protos
	return nil
}

func sameRoute(a, b *netlink.Route) bool {
	if a.Type != b.Type || a.Protocol != b.Protocol || !a.Gw.Equal(b.Gw) || a.LinkIndex != b.LinkIndex ||
		!a.Src.Equal(b.Src) || len(a.MultiPath) != len(b.MultiPath) {
		return false
	}
	for i := range a.MultiPath {
		x, y := a.MultiPath[i], b.MultiPath[i]
		if !x.Gw.Equal(y.Gw) || x.LinkIndex != y.LinkIndex || x.Hops != y.Hops {
			return false
		}
	}
	return true
}

// RouteAdd implements Netlink (NLM_F_CREATE|NLM_F_EXCL).
func (k *MemKernel) RouteAdd(r *netlink.Route) error { return k.writeRoute(OpRouteAdd, r, modeExcl) }

// RouteReplace implements Netlink (NLM_F_CREATE|NLM_F_REPLACE): it
// replaces the first route on the key whatever its protocol, as the kernel
// does, which is why the reconciler must check ownership first.
func (k *MemKernel) RouteReplace(r *netlink.Route) error {
	return k.writeRoute(OpRouteReplace, r, modeReplace)
}

// RoutePrepend is `ip route prepend`, as another program would run it: a
// route before those on its key (IPv4), or merged into one (IPv6).
func (k *MemKernel) RoutePrepend(r *netlink.Route) error {
	return k.writeRoute("", r, modePrepend) // another program: no injected fault
}

// RouteAppend is `ip route append`: a route after those on its key
// (IPv4), or merged into one (IPv6).
func (k *MemKernel) RouteAppend(r *netlink.Route) error {
	return k.writeRoute("", r, modeAppend)
}

// RouteDel implements Netlink: the first route on the key whose protocol,
// type and gateway match those given (when given) is deleted. For an IPv6
// route with siblings, a gateway names the one sibling to delete.
func (k *MemKernel) RouteDel(r *netlink.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failing(OpRouteDel); err != nil {
		return err
	}
	c := *r
	if c.Table == 0 {
		c.Table = unix.RT_TABLE_MAIN
	}
	if c.Family == unix.AF_INET6 && c.Priority == 0 {
		c.Priority = ip6DefaultMetric
	}
	key := routeKeyOf(&c)
	for i := range k.routes {
		h := &k.routes[i]
		if routeKeyOf(&h.Route) != key || (c.Type != 0 && h.Type != c.Type) {
			continue
		}
		if len(h.MultiPath) > 0 && c.Gw != nil && h.Family == unix.AF_INET6 {
			if k.delSibling(i, c) {
				return nil
			}
			continue
		}
		if (c.Protocol != 0 && h.Protocol != c.Protocol) || (c.Gw != nil && !c.Gw.Equal(h.Gw)) {
			continue
		}
		gone := h.Route
		k.routes = slices.Delete(k.routes, i, i+1)
		k.notify(&gone, true)
		return nil
	}
	return unix.ESRCH
}

// delSibling deletes the sibling of route i that c names; mu held.
func (k *MemKernel) delSibling(i int, c netlink.Route) bool {
	h := k.routes[i]
	found := false
	rest := h.without(func(nh *netlink.NexthopInfo, p netlink.RouteProtocol) bool {
		if !found && nh.Gw.Equal(c.Gw) && (c.Protocol == 0 || p == c.Protocol) {
			found = true
			return true
		}
		return false
	})
	if !found {
		return false
	}
	k.routes[i] = rest
	gone := c
	gone.Table, gone.Priority, gone.Dst = h.Table, h.Priority, h.Dst
	k.notify(&gone, true)
	return true
}

// RouteListFilteredIter implements Netlink as Kernel does on a kernel with
// strict checking: family, table (with RT_FILTER_TABLE; without it only
// the main table is listed, as the library does) and protocol (with
// RT_FILTER_PROTOCOL: of the route's first sibling) filter before a route
// is copied out, and only the routes that pass count in Dumped.
func (k *MemKernel) RouteListFilteredIter(family int, filter *netlink.Route, mask uint64, f func(netlink.Route) bool) error {
	k.mu.Lock()
	if err := k.failing(OpRouteDump); err != nil {
		k.mu.Unlock()
		return err
	}
	var routes []netlink.Route
	for _, mr := range k.routes {
		r := mr.Route
		if !dumpMatches(&r, family, filter, mask) {
			continue
		}
		if r.MultiPath != nil {
			mp := make([]*netlink.NexthopInfo, len(r.MultiPath))
			for j, nh := range r.MultiPath {
				n := *nh
				mp[j] = &n
			}
			r.MultiPath = mp
		}
		routes = append(routes, r)
	}
	k.dumped += len(routes)
	k.mu.Unlock()
	for _, r := range routes {
		if !f(r) {
			break
		}
	}
	return nil
}

func dumpMatches(r *netlink.Route, family int, filter *netlink.Route, mask uint64) bool {
	if family != netlink.FAMILY_ALL && r.Family != family {
		return false
	}
	if r.Table != unix.RT_TABLE_MAIN && (filter == nil || mask&netlink.RT_FILTER_TABLE == 0) {
		return false
	}
	if filter == nil {
		return true
	}
	if mask&netlink.RT_FILTER_TABLE != 0 && filter.Table != 0 && r.Table != filter.Table {
		return false
	}
	return mask&netlink.RT_FILTER_PROTOCOL == 0 || r.Protocol == filter.Protocol
}

// Dumped returns how many routes route dumps have copied out so far: what
// a resync costs beside a large table of another protocol.
func (k *MemKernel) Dumped() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.dumped
}

func ruleNorm(r *netlink.Rule) netlink.Rule {
	c := *r
	if c.Mark != 0 && c.Mask == nil {
		m := uint32(0xffffffff)
		c.Mask = &m
	}
	if c.Mask != nil {
		m := *c.Mask
		c.Mask = &m
	}
	if c.Priority < 0 {
		c.Priority = 0
	}
	return c
}

func ruleMatch(h, q *netlink.Rule) bool {
	ipn := func(a, b *net.IPNet) bool {
		if a == nil || b == nil {
			return a == nil && b == nil
		}
		return a.String() == b.String()
	}
	mask := func(r *netlink.Rule) uint32 {
		if r.Mask == nil {
			return 0
		}
		return *r.Mask
	}
	return h.Family == q.Family && h.Priority == q.Priority && h.Table == q.Table &&
		ipn(h.Src, q.Src) && ipn(h.Dst, q.Dst) && h.Mark == q.Mark && mask(h) == mask(q) &&
		h.IifName == q.IifName && h.OifName == q.OifName &&
		(q.Protocol == 0 || h.Protocol == q.Protocol)
}

// RuleAdd implements Netlink: an identical rule is EEXIST.
func (k *MemKernel) RuleAdd(r *netlink.Rule) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failing(OpRuleAdd); err != nil {
		return err
	}
	c := ruleNorm(r)
	for i := range k.rules {
		if ruleMatch(&k.rules[i], &c) {
			return unix.EEXIST
		}
	}
	k.rules = append(k.rules, c)
	slices.SortStableFunc(k.rules, func(a, b netlink.Rule) int { return a.Priority - b.Priority })
	k.notify(nil, false)
	return nil
}

// RuleDel implements Netlink.
func (k *MemKernel) RuleDel(r *netlink.Rule) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failing(OpRuleDel); err != nil {
		return err
	}
	c := ruleNorm(r)
	for i := range k.rules {
		if ruleMatch(&k.rules[i], &c) {
			k.rules = slices.Delete(k.rules, i, i+1)
			k.notify(nil, false)
			return nil
		}
	}
	return unix.ENOENT
}

// RuleListFiltered implements Netlink (no filtering beyond family).
func (k *MemKernel) RuleListFiltered(family int, _ *netlink.Rule, _ uint64) ([]netlink.Rule, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failing(OpRuleDump); err != nil {
		return nil, err
	}
	var out []netlink.Rule
	for _, r := range k.rules {
		if family == netlink.FAMILY_ALL || r.Family == family {
			out = append(out, ruleNorm(&r))
		}
	}
	return out, nil
}

// State returns everything in the fake kernel, owned or not, in this
// package's form, for golden dumps. Routes sharing a key keep the
// kernel's order.
func (k *MemKernel) State() routing.State {
	s, _ := routing.KernelState(k)
	return s
}

// FlushLink removes every route through the link, as the kernel does when
// a link goes down.
func (k *MemKernel) FlushLink(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dropLink(k.linkIndex(name), false)
}

// RuleBatch implements RuleBatcher as the kernel would: each rule in
// order, each with its own result, so the reconciler's batch path runs
// against the fake too (error injection included).
func (k *MemKernel) RuleBatch(del bool, rules []routing.Rule) []error {
	errs := make([]error, len(rules))
	for i, r := range rules {
		if del {
			errs[i] = k.RuleDel(routing.ToNetlinkRule(r))
		} else {
			errs[i] = k.RuleAdd(routing.ToNetlinkRule(r))
		}
	}
	return errs
}
