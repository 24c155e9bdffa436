package routingtest

import (
	"net"
	"slices"

	"github.com/uplinkd/uplinkd/routing"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The nexthop objects of MemKernel, modelled on the kernel's rules:
// an add of an id that exists is EEXIST; a replace cannot turn a gateway
// into a group, change a group's type or a resilient group's bucket count
// (EINVAL); a group may name only existing gateway objects (EINVAL);
// deleting an object deletes every route through it, and a gateway's
// delete takes it out of its groups, deleting a group left empty with its
// routes. A route through a group is dumped with the group's members
// expanded, as the kernel's nexthop_compat_mode shows it.

// nexthopMem is MemKernel's nexthop state, guarded by MemKernel.mu.
type nexthopMem struct {
	objs map[uint32]routing.NexthopObj
	form routing.Form // what BestForm reports; routing.FormResilient unless set
	// refuse makes resilient groups fail with EINVAL while BestForm
	// still offers them, as a kernel whose release misleads would.
	refuse bool
}

// RefuseResilient makes resilient group writes fail with EINVAL.
func (k *MemKernel) RefuseResilient() {
	k.mu.Lock()
	k.nh.refuse = true
	k.mu.Unlock()
}

// SetNexthopForm makes BestForm report f, as an older kernel would.
func (k *MemKernel) SetNexthopForm(f routing.Form) {
	k.mu.Lock()
	k.nh.form = f
	k.mu.Unlock()
}

// NexthopObjects returns the nexthop objects held, by id, for tests.
func (k *MemKernel) NexthopObjects() []routing.NexthopObj {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.nexthopList()
}

func (k *MemKernel) nexthopList() []routing.NexthopObj {
	out := make([]routing.NexthopObj, 0, len(k.nh.objs))
	for _, o := range k.nh.objs {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b routing.NexthopObj) int { return int(int64(a.ID) - int64(b.ID)) })
	return out
}

// BestForm implements NexthopKernel.
func (k *MemKernel) BestForm() (routing.Form, string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.nh.form == routing.FormAuto {
		return routing.FormResilient, ""
	}
	return k.nh.form, "MemKernel.SetNexthopForm"
}

// Nexthops implements NexthopKernel.
func (k *MemKernel) Nexthops() ([]routing.NexthopObj, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.nh.form == routing.FormClassic {
		return nil, unix.EOPNOTSUPP
	}
	return k.nexthopList(), nil
}

// WriteNexthop implements NexthopKernel.
func (k *MemKernel) WriteNexthop(kind routing.OpKind, o routing.NexthopObj) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.failing(OpNexthopWrite); err != nil {
		return err
	}
	if k.nh.objs == nil {
		k.nh.objs = map[uint32]routing.NexthopObj{}
	}
	cur, exists := k.nh.objs[o.ID]
	switch kind {
	case routing.OpDelete:
		if !exists {
			return unix.ENOENT
		}
		k.deleteNexthop(o.ID)
		return nil
	case routing.OpAdd:
		if exists {
			return unix.EEXIST
		}
	case routing.OpReplace:
		if exists && cur.Kind() != o.Kind() {
			return unix.EINVAL
		}
	}
	if o.IsGroup() {
		for _, m := range o.Group {
			if g, ok := k.nh.objs[m.ID]; !ok || g.IsGroup() {
				return unix.EINVAL
			}
		}
		if o.Resilient != nil && (k.nh.form == routing.FormGroup || k.nh.refuse) {
			return unix.EINVAL
		}
	} else if k.linkIndex(o.Dev) == 0 {
		return unix.ENODEV
	}
	k.nh.objs[o.ID] = o
	k.expandRoutes()
	return nil
}

// deleteNexthop removes id and what the kernel removes with it.
func (k *MemKernel) deleteNexthop(id uint32) {
	o := k.nh.objs[id]
	delete(k.nh.objs, id)
	k.dropRoutesVia(id)
	if o.IsGroup() {
		return
	}
	for gid, g := range k.nh.objs {
		if !g.IsGroup() {
			continue
		}
		g.Group = slices.DeleteFunc(slices.Clone(g.Group), func(m routing.GroupMember) bool { return m.ID == id })
		if len(g.Group) == 0 {
			delete(k.nh.objs, gid)
			k.dropRoutesVia(gid)
			continue
		}
		k.nh.objs[gid] = g
	}
	k.expandRoutes()
}

func (k *MemKernel) dropRoutesVia(id uint32) {
	kept := k.routes[:0]
	for _, r := range k.routes {
		if r.nhid == id {
			k.notify(&r.Route, true)
			continue
		}
		kept = append(kept, r)
	}
	k.routes = kept
}

// expand is the multipath a route through group id is dumped with.
func (k *MemKernel) expand(id uint32) []*netlink.NexthopInfo {
	var out []*netlink.NexthopInfo
	for _, m := range k.nh.objs[id].Group {
		gw := k.nh.objs[m.ID]
		out = append(out, &netlink.NexthopInfo{LinkIndex: k.linkIndex(gw.Dev), Gw: net.IP(gw.Gateway.AsSlice()), Hops: m.Weight - 1})
	}
	return out
}

func (k *MemKernel) expandRoutes() {
	for i := range k.routes {
		if id := k.routes[i].nhid; id != 0 {
			k.routes[i].MultiPath = k.expand(id)
		}
	}
}

// RouteNHIDs implements NexthopKernel.
func (k *MemKernel) RouteNHIDs(family int, proto uint8) (map[routing.RouteKey]uint32, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	af := unix.AF_INET
	if family == 6 {
		af = unix.AF_INET6
	}
	out := map[routing.RouteKey]uint32{}
	for _, r := range k.routes {
		if r.nhid != 0 && r.Family == af && uint8(r.Protocol) == proto {
			out[r.nhKey] = r.nhid
		}
	}
	return out, nil
}

// WriteRouteVia implements NexthopKernel.
func (k *MemKernel) WriteRouteVia(kind routing.OpKind, r routing.Route) error {
	k.mu.Lock()
	g, ok := k.nh.objs[r.NHID]
	mp := k.expand(r.NHID)
	k.mu.Unlock()
	if !ok || !g.IsGroup() {
		return unix.EINVAL
	}
	nr := &netlink.Route{Family: afOf(r.Family), Dst: &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), r.Dst.Addr().BitLen())},
		Table: int(r.Table), Priority: int(r.Metric), Tos: int(r.Tos), Type: int(r.Type), Protocol: netlink.RouteProtocol(r.Protocol), MultiPath: mp}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	var err error
	if kind == routing.OpAdd {
		err = k.RouteAdd(nr)
	} else {
		err = k.RouteReplace(nr)
	}
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	key := routeKeyOf(nr)
	for i := range k.routes {
		if routeKeyOf(&k.routes[i].Route) == key && k.routes[i].Protocol == nr.Protocol {
			k.routes[i].nhid, k.routes[i].nhKey = r.NHID, r.Key()
		}
	}
	return nil
}

func afOf(family int) int {
	if family == 6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}
