package routing

import (
	"context"
	"net"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// MemKernel is an in-memory routing table and rule list that implements
// Netlink and Watcher with the kernel's semantics as uplinkd relies on
// them: routes keyed by (family, table, dst, metric, tos), EEXIST on an add
// to a taken key, replace of the first route on a key whatever its
// protocol, deletes that honour protocol and type, IPv6 metric 0 stored as
// 1024, rules matched on every selector. It exists so that scenario tests
// and `uplinkd plan` demos run the production code path without root.
type MemKernel struct {
	mu       sync.Mutex
	links    []netlink.Link
	routes   []netlink.Route
	rules    []netlink.Rule
	watchers map[chan struct{}]RouteFilter
	dumped   int
}

// NewMemKernel returns a fake kernel with the named links (index 1 is lo,
// the names get 2, 3, ...).
func NewMemKernel(linkNames ...string) *MemKernel {
	k := &MemKernel{watchers: map[chan struct{}]RouteFilter{}}
	k.AddLink("lo")
	for _, n := range linkNames {
		k.AddLink(n)
	}
	return k
}

// AddLink adds a link and returns its index.
func (k *MemKernel) AddLink(name string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	idx := len(k.links) + 1
	k.links = append(k.links, &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name, Index: idx}})
	return idx
}

// notify wakes the watchers. route is the route that changed, nil for a
// rule change, which no filter applies to.
func (k *MemKernel) notify(route *netlink.Route, deleted bool) {
	var ev RouteEvent
	if route != nil {
		fam := familyOfAF(route.Family)
		ev = RouteEvent{Family: fam, Table: uint32(route.Table), Dst: fromIPNet(route.Dst, fam), Metric: uint32(route.Priority),
			Tos: uint8(route.Tos), Protocol: uint8(route.Protocol), Deleted: deleted}
		if !ev.Dst.IsValid() {
			ev.Dst = defaultDst(fam)
		}
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

// Watch implements Watcher: every change of routes or rules is a hint.
func (k *MemKernel) Watch(ctx context.Context, hints chan<- Hint) error {
	return k.WatchFiltered(ctx, hints, nil)
}

// WatchFiltered implements FilteringWatcher: every change of rules, and
// of the routes keep accepts, is a hint.
func (k *MemKernel) WatchFiltered(ctx context.Context, hints chan<- Hint, keep RouteFilter) error {
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
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c:
			select {
			case hints <- Hint{Reason: ReasonEvent, What: "route"}:
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
	return slices.Clone(k.links), nil
}

func (k *MemKernel) linkOK(i int) bool { return i >= 1 && i <= len(k.links) }

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
	return memKey{r.Family, r.Table, r.Priority, r.Tos, dst}
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
	if c.Type == unix.RTN_UNICAST {
		if len(c.MultiPath) == 0 && c.LinkIndex != 0 && !k.linkOK(c.LinkIndex) {
			return c, unix.ENODEV
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
	} else {
		// Reject routes keep no nexthop; the kernel shows them on lo.
		c.Gw, c.MultiPath, c.LinkIndex = nil, nil, 1
	}
	return c, nil
}

func (k *MemKernel) find(key memKey) int {
	for i := range k.routes {
		if routeKeyOf(&k.routes[i]) == key {
			return i
		}
	}
	return -1
}

// RouteAdd implements Netlink (NLM_F_CREATE|NLM_F_EXCL).
func (k *MemKernel) RouteAdd(r *netlink.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, err := k.canonical(r)
	if err != nil {
		return err
	}
	if k.find(routeKeyOf(&c)) >= 0 {
		return unix.EEXIST
	}
	k.routes = append(k.routes, c)
	k.notify(&c, false)
	return nil
}

// RouteReplace implements Netlink (NLM_F_CREATE|NLM_F_REPLACE): it
// replaces the first route on the key whatever its protocol, as the kernel
// does, which is why the reconciler must check ownership first.
func (k *MemKernel) RouteReplace(r *netlink.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, err := k.canonical(r)
	if err != nil {
		return err
	}
	if i := k.find(routeKeyOf(&c)); i >= 0 {
		k.routes[i] = c
	} else {
		k.routes = append(k.routes, c)
	}
	k.notify(&c, false)
	return nil
}

// RouteDel implements Netlink: the first route on the key whose protocol,
// type and gateway match those given (when given) is deleted.
func (k *MemKernel) RouteDel(r *netlink.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	c := *r
	typ := c.Type
	if c.Table == 0 {
		c.Table = unix.RT_TABLE_MAIN
	}
	if c.Family == unix.AF_INET6 && c.Priority == 0 {
		c.Priority = ip6DefaultMetric
	}
	key := routeKeyOf(&c)
	for i := range k.routes {
		h := &k.routes[i]
		if routeKeyOf(h) != key ||
			(c.Protocol != 0 && h.Protocol != c.Protocol) ||
			(typ != 0 && h.Type != typ) ||
			(c.Gw != nil && !c.Gw.Equal(h.Gw)) {
			continue
		}
		gone := *h
		k.routes = slices.Delete(k.routes, i, i+1)
		k.notify(&gone, true)
		return nil
	}
	return unix.ESRCH
}

// RouteListFilteredIter implements Netlink as Kernel does on a kernel with
// strict checking: family, table (with RT_FILTER_TABLE; without it only
// the main table is listed, as the library does) and protocol (with
// RT_FILTER_PROTOCOL) filter before a route is copied out, and only the
// routes that pass count in Dumped.
func (k *MemKernel) RouteListFilteredIter(family int, filter *netlink.Route, mask uint64, f func(netlink.Route) bool) error {
	k.mu.Lock()
	var routes []netlink.Route
	for _, r := range k.routes {
		if family != netlink.FAMILY_ALL && r.Family != family {
			continue
		}
		if r.Table != unix.RT_TABLE_MAIN && (filter == nil || mask&netlink.RT_FILTER_TABLE == 0) {
			continue
		}
		if filter != nil {
			if mask&netlink.RT_FILTER_TABLE != 0 && filter.Table != 0 && r.Table != filter.Table {
				continue
			}
			if mask&netlink.RT_FILTER_PROTOCOL != 0 && r.Protocol != filter.Protocol {
				continue
			}
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
	var out []netlink.Rule
	for _, r := range k.rules {
		if family == netlink.FAMILY_ALL || r.Family == family {
			out = append(out, ruleNorm(&r))
		}
	}
	return out, nil
}

// State returns everything in the fake kernel, owned or not, in this
// package's form, for golden dumps.
func (k *MemKernel) State() State {
	l, _ := readLinks(k)
	var s State
	_ = k.RouteListFilteredIter(netlink.FAMILY_ALL, &netlink.Route{}, netlink.RT_FILTER_TABLE, func(r netlink.Route) bool {
		s.Routes = append(s.Routes, fromNetlinkRoute(r, l))
		return true
	})
	rules, _ := k.RuleListFiltered(netlink.FAMILY_ALL, nil, 0)
	for _, r := range rules {
		s.Rules = append(s.Rules, fromNetlinkRule(r))
	}
	return Normalize(s)
}

// FlushLink removes every route through the link, as the kernel does when
// a link goes down.
func (k *MemKernel) FlushLink(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	idx := 0
	for _, l := range k.links {
		if l.Attrs().Name == name {
			idx = l.Attrs().Index
		}
	}
	k.routes = slices.DeleteFunc(k.routes, func(r netlink.Route) bool {
		if r.LinkIndex == idx {
			return true
		}
		for _, nh := range r.MultiPath {
			if nh.LinkIndex == idx {
				return true
			}
		}
		return false
	})
	// The kernel sends no route notification for what a link takes down
	// with it (IPv4); the link event is what tells.
	k.notify(nil, false)
}
