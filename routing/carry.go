package routing

import "github.com/uplinkd/uplinkd/policy"

// This file owns the one rule of which gateways carry traffic. Desired
// builds routes from it, and the daemon asks Standby for the gateways the
// detector may probe at the standby cadence, so that the route and the
// probing can never disagree on which tier is active.

// effective is a gateway's tier and weight under its current health.
func effective(g *policy.Gateway, h Health) (tier, weight int) {
	if h == Degraded {
		return g.DegradedTier, g.DegradedWeight
	}
	return g.Tier, g.Weight
}

// groupCarriers returns the members a group routes over now: the healthy
// members of the best tier. The best tier is the lowest one holding an Up
// member; only when no member is Up do degraded members alone decide it, so
// a degraded primary yields to an Up backup in a higher tier but still
// carries traffic when nothing better is left. Degraded members of the
// chosen tier join it (with their degraded weight, see groupNexthops).
func groupCarriers(gws map[string]*policy.Gateway, g *policy.Group, h Snapshot) []string {
	best, bestUp := -1, false
	for _, name := range g.Gateways {
		gw := gws[name]
		if gw == nil || !h[name].Healthy() {
			continue
		}
		tier, _ := effective(gw, h[name])
		up := h[name] == Up
		switch {
		case best < 0, up && !bestUp, up == bestUp && tier < best:
			best, bestUp = tier, up
		}
	}
	if best < 0 {
		return nil
	}
	var out []string
	for _, name := range g.Gateways {
		gw := gws[name]
		if gw == nil || !h[name].Healthy() {
			continue
		}
		if tier, _ := effective(gw, h[name]); tier == best {
			out = append(out, name)
		}
	}
	return out
}

// groupNexthops returns the nexthops of a group's carriers, each with its
// weight under its current health.
func groupNexthops(gws map[string]*policy.Gateway, g *policy.Group, h Snapshot) []Nexthop {
	var nhs []Nexthop
	for _, name := range groupCarriers(gws, g, h) {
		gw := gws[name]
		_, weight := effective(gw, h[name])
		nhs = append(nhs, Nexthop{Gateway: gw.Address, Dev: gw.Interface, Weight: weight})
	}
	return normNexthops(nhs)
}

// allNexthops is every member of a group, as if healthy: last_resort "keep".
func allNexthops(gws map[string]*policy.Gateway, g *policy.Group) []Nexthop {
	var nhs []Nexthop
	for _, name := range g.Gateways {
		if gw := gws[name]; gw != nil {
			nhs = append(nhs, Nexthop{Gateway: gw.Address, Dev: gw.Interface, Weight: gw.Weight})
		}
	}
	return normNexthops(nhs)
}

// failover holds, per family, the gateway a failed-over table routes
// through: the healthy gateway with the lowest tier, then the highest
// weight, then the first name. Computed once per Desired, since with many
// gateways a scan per failed table would be quadratic.
type failover map[bool]*policy.Gateway // key: Is6

func failoverTargets(p *policy.Policy, h Snapshot) failover {
	best := failover{}
	type tw struct{ t, w int }
	score := map[bool]tw{}
	for _, gw := range p.Gateways {
		if !h[gw.Name].Healthy() {
			continue
		}
		t, w := effective(gw, h[gw.Name])
		fam := gw.Is6()
		cur, ok := best[fam]
		if !ok || cur == nil || t < score[fam].t || t == score[fam].t && w > score[fam].w {
			best[fam], score[fam] = gw, tw{t, w}
		}
	}
	return best
}

// pick returns the failover target for a down gateway (never itself: a
// down gateway is not healthy, so it is never a target).
func (f failover) pick(down *policy.Gateway) *policy.Gateway { return f[down.Is6()] }

// Carrying returns the gateways that carry traffic under h: the members
// a group routes over (groupNexthops), every healthy gateway with a table
// of its own (its sources' traffic goes there), the failover target of a
// down gateway's table, and every healthy gateway in no group (announces
// and rules name it directly).
func Carrying(p *policy.Policy, h Snapshot) map[string]bool {
	out := map[string]bool{}
	gws := make(map[string]*policy.Gateway, len(p.Gateways))
	inGroup := map[string]bool{}
	for _, gw := range p.Gateways {
		gws[gw.Name] = gw
	}
	for _, g := range p.Groups {
		for _, name := range g.Gateways {
			inGroup[name] = true
		}
		for _, name := range groupCarriers(gws, g, h) {
			out[name] = true
		}
	}
	alt := failoverTargets(p, h)
	for _, gw := range p.Gateways {
		healthy := h[gw.Name].Healthy()
		switch {
		case healthy && (gw.Table != 0 || !inGroup[gw.Name]):
			out[gw.Name] = true
		case !healthy && gw.Table != 0 && gw.OnDown == policy.TableFailover:
			if a := alt.pick(gw); a != nil {
				out[a.Name] = true
			}
		}
	}
	return out
}

// ActiveTier is the tier a group routes over under h, for the daemon's
// uplinkd_group_active_tier: the effective tier of its carriers, or -1 when
// no member is healthy.
func ActiveTier(p *policy.Policy, g *policy.Group, h Snapshot) int {
	gws := make(map[string]*policy.Gateway, len(g.Gateways))
	for _, name := range g.Gateways {
		if gw := p.Gateway(name); gw != nil {
			gws[name] = gw
		}
	}
	c := groupCarriers(gws, g, h)
	if len(c) == 0 {
		return -1
	}
	tier, _ := effective(gws[c[0]], h[c[0]])
	return tier
}

// Standby returns the gateways that are healthy but carry no traffic
// (see Carrying): backups the detector probes at the standby cadence.
// Down gateways are not standby; they are probed for recovery.
func Standby(p *policy.Policy, h Snapshot) map[string]bool {
	carrying := Carrying(p, h)
	out := map[string]bool{}
	for _, gw := range p.Gateways {
		if h[gw.Name].Healthy() && !carrying[gw.Name] {
			out[gw.Name] = true
		}
	}
	return out
}
