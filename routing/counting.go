package routing

import (
	"sync/atomic"

	"github.com/vishvananda/netlink"
)

// countingNetlink counts every write that reaches the kernel boundary, so
// "zero writes on restart" is measured, not assumed.
type countingNetlink struct {
	Netlink
	writes atomic.Int64
}

func (c *countingNetlink) RouteAdd(r *netlink.Route) error {
	c.writes.Add(1)
	return c.Netlink.RouteAdd(r)
}

func (c *countingNetlink) RouteReplace(r *netlink.Route) error {
	c.writes.Add(1)
	return c.Netlink.RouteReplace(r)
}

func (c *countingNetlink) RouteDel(r *netlink.Route) error {
	c.writes.Add(1)
	return c.Netlink.RouteDel(r)
}

func (c *countingNetlink) RuleAdd(r *netlink.Rule) error {
	c.writes.Add(1)
	return c.Netlink.RuleAdd(r)
}

func (c *countingNetlink) RuleDel(r *netlink.Rule) error {
	c.writes.Add(1)
	return c.Netlink.RuleDel(r)
}
