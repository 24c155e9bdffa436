package routing

import (
	"errors"
	"fmt"

	"github.com/uplinkd/uplinkd/internal/rtnl"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NexthopKernel is the kernel boundary for nexthop objects and the routes
// that go through them, in this package's types.
type NexthopKernel interface {
	// BestForm is the best form the kernel offers, and why when it is not
	// FormResilient. It writes nothing.
	BestForm() (Form, string)
	// Nexthops lists every nexthop object, foreign ones included.
	Nexthops() ([]NexthopObj, error)
	// WriteNexthop adds (OpAdd, EEXIST is an error to the caller),
	// replaces or deletes o.
	WriteNexthop(kind OpKind, o NexthopObj) error
	// RouteNHIDs maps each route of family and protocol that goes
	// through a nexthop object to that object's id.
	RouteNHIDs(family int, proto uint8) (map[RouteKey]uint32, error)
	// WriteRouteVia adds or replaces r as a route through r.NHID.
	WriteRouteVia(kind OpKind, r Route) error
}

// KernelNexthops is the production NexthopKernel of one namespace, on
// internal/rtnl; link names are resolved through links.
type KernelNexthops struct {
	c     *rtnl.Conn
	links *netlink.Handle
}

// NewKernelNexthops opens the nexthop socket in ns; links resolves link
// names and indexes in the same namespace.
func NewKernelNexthops(ns netns.NsHandle, links *netlink.Handle) (*KernelNexthops, error) {
	c, err := rtnl.Dial(ns)
	if err != nil {
		return nil, fmt.Errorf("opening nexthop socket: %w", err)
	}
	return &KernelNexthops{c: c, links: links}, nil
}

// Close closes the socket.
func (k *KernelNexthops) Close() error { return k.c.Close() }

// BestForm implements NexthopKernel.
func (k *KernelNexthops) BestForm() (Form, string) {
	caps := k.c.Probe()
	switch {
	case caps.Resilient:
		return FormResilient, ""
	case caps.Nexthops:
		return FormGroup, caps.Reason
	}
	return FormClassic, caps.Reason
}

func (k *KernelNexthops) linkName(index uint32) string {
	if index == 0 {
		return ""
	}
	l, err := k.links.LinkByIndex(int(index))
	if err != nil {
		return fmt.Sprintf("if%d", index)
	}
	return l.Attrs().Name
}

// Nexthops implements NexthopKernel.
func (k *KernelNexthops) Nexthops() ([]NexthopObj, error) {
	list, err := k.c.Nexthops()
	if err != nil {
		return nil, err
	}
	out := make([]NexthopObj, 0, len(list))
	for _, n := range list {
		o := NexthopObj{ID: n.ID, Protocol: n.Protocol}
		if n.IsGroup() {
			for _, m := range n.Group {
				o.Group = append(o.Group, GroupMember{ID: m.ID, Weight: int(m.Weight)})
			}
			if n.Type == rtnl.Resilient {
				o.Resilient = &Resilience{Buckets: int(n.Resilient.Buckets), IdleTimer: n.Resilient.IdleTimer, UnbalancedTimer: n.Resilient.UnbalancedTimer}
			}
		} else {
			o.Family = familyOfAF(int(n.Family))
			o.Gateway = n.Gateway.Unmap()
			o.Dev = k.linkName(n.OIF)
		}
		out = append(out, o)
	}
	return out, nil
}

// WriteNexthop implements NexthopKernel.
func (k *KernelNexthops) WriteNexthop(kind OpKind, o NexthopObj) error {
	if kind == OpDelete {
		return k.c.Do(rtnl.NexthopDeleteRequest(o.ID))
	}
	n := rtnl.Nexthop{ID: o.ID, Protocol: o.Protocol}
	if o.IsGroup() {
		for _, m := range o.Group {
			n.Group = append(n.Group, rtnl.Member{ID: m.ID, Weight: uint16(m.Weight)})
		}
		if r := o.Resilient; r != nil {
			n.Type = rtnl.Resilient
			n.Resilient = rtnl.ResilientParams{Buckets: uint16(r.Buckets), IdleTimer: r.IdleTimer, UnbalancedTimer: r.UnbalancedTimer}
		}
	} else {
		n.Family = uint8(afOf(o.Family))
		n.Gateway = o.Gateway
		l, err := k.links.LinkByName(o.Dev)
		if err != nil {
			return fmt.Errorf("resolving interface %s: %w", o.Dev, err)
		}
		n.OIF = uint32(l.Attrs().Index)
	}
	flags := rtnl.FlagsAdd
	if kind == OpReplace {
		flags = rtnl.FlagsReplace
	}
	req, err := rtnl.NexthopRequest(n, flags)
	if err != nil {
		return err
	}
	return k.c.Do(req)
}

// RouteNHIDs implements NexthopKernel.
func (k *KernelNexthops) RouteNHIDs(family int, proto uint8) (map[RouteKey]uint32, error) {
	routes, err := k.c.Routes(uint8(afOf(family)), proto)
	if err != nil {
		if errors.Is(err, rtnl.ErrDumpInterrupted) {
			return nil, netlink.ErrDumpInterrupted
		}
		return nil, err
	}
	out := map[RouteKey]uint32{}
	for _, r := range routes {
		if r.NHID != 0 {
			out[RouteKey{Family: family, Table: r.Table, Dst: r.Dst.Masked(), Metric: r.Metric, Tos: r.Tos}] = r.NHID
		}
	}
	return out, nil
}

// WriteRouteVia implements NexthopKernel.
func (k *KernelNexthops) WriteRouteVia(kind OpKind, r Route) error {
	flags := rtnl.FlagsAdd
	if kind == OpReplace {
		flags = rtnl.FlagsReplace
	}
	req, err := rtnl.RouteRequest(rtnl.Route{Family: uint8(afOf(r.Family)), Table: r.Table, Dst: r.Dst, Metric: r.Metric, Tos: r.Tos,
		Protocol: r.Protocol, Type: uint8(r.Type), Src: r.Src, NHID: r.NHID}, flags)
	if err != nil {
		return err
	}
	return k.c.Do(req)
}
