package daemon

import (
	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
)

// carriage is what the metrics say about traffic: which gateways carry it
// and which tier each group routes over (-1: none).
type carriage struct {
	inRoute map[string]bool
	tier    map[string]int
}

// carrying asks routing, which owns the rule of which gateways carry
// traffic (routing.Carrying, the same answer Desired builds routes from and
// Standby derives the backups from); the daemon keeps no copy of it.
func carrying(p *policy.Policy, h routing.Snapshot) carriage {
	c := carriage{inRoute: map[string]bool{}, tier: map[string]int{}}
	carriers := routing.Carrying(p, h)
	for _, g := range p.Gateways {
		c.inRoute[g.Name] = carriers[g.Name]
	}
	for _, grp := range p.Groups {
		c.tier[grp.Name] = routing.ActiveTier(p, grp, h)
	}
	return c
}
