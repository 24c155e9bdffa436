package routing

import (
	"net/netip"
	"slices"

	"github.com/uplinkd/uplinkd/policy"
)

// ip6DefaultMetric is the metric the kernel gives an IPv6 route added with
// none (IP6_RT_PRIO_USER). Desired writes it out so that what it wants is
// what the kernel will report, and a restart compares equal.
const ip6DefaultMetric = 1024

func defaultDst(family int) netip.Prefix {
	if family == 6 {
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
}

func metricFor(family int, m uint32) uint32 {
	if family == 6 && m == 0 {
		return ip6DefaultMetric
	}
	return m
}

// Desired is the kernel state the policy wants under the given health. It is
// pure and deterministic: the same inputs give the same State, sorted.
func Desired(p *policy.Policy, h Snapshot) State {
	p = withoutUnresolved(p)
	proto := p.Daemon.RouteProtocol
	var s State
	gws := make(map[string]*policy.Gateway, len(p.Gateways))
	for _, gw := range p.Gateways {
		gws[gw.Name] = gw
	}
	alt := failoverTargets(p, h)
	groupNH := map[string][]Nexthop{}
	for _, g := range p.Groups {
		r := Route{
			Family:     g.Family,
			Table:      g.Table,
			Dst:        defaultDst(g.Family),
			Metric:     metricFor(g.Family, g.Metric),
			Type:       Unicast,
			Protocol:   proto,
			Owner:      "group/" + g.Name,
			Resilience: &Resilience{Buckets: g.Buckets, IdleTimer: g.IdleTimer, UnbalancedTimer: g.UnbalancedTimer},
		}
		nhs := groupNexthops(gws, g, h)
		if g.Condition != "" && !ConditionUp(h, g.Condition) {
			// Gated: as if no member were healthy, so last_resort decides.
			nhs = nil
		}
		groupNH[g.Name] = nhs
		switch {
		case len(nhs) > 0:
			r.Nexthops = nhs
		case g.LastResort == policy.LastResortKeep:
			r.Nexthops = allNexthops(gws, g)
			if len(r.Nexthops) == 0 {
				continue // every member an unresolved auto gateway: nothing to keep
			}
		case g.LastResort == policy.LastResortUnreachable:
			r.Type = Unreachable
		case g.LastResort == policy.LastResortBlackhole:
			r.Type = Blackhole
		default: // remove
			continue
		}
		s.Routes = append(s.Routes, r)
	}
	for _, gw := range p.Gateways {
		if gw.Table == 0 {
			continue
		}
		fam := gw.Family()
		r := Route{
			Family:   fam,
			Table:    gw.Table,
			Dst:      defaultDst(fam),
			Metric:   metricFor(fam, gw.Metric),
			Type:     Unicast,
			Protocol: proto,
			Owner:    "gateway/" + gw.Name,
			Nexthops: []Nexthop{{Gateway: gw.Address, Dev: gw.Interface}},
		}
		if len(gw.Sources) > 0 {
			r.Src = gw.Sources[0]
		}
		if !h[gw.Name].Healthy() && gw.OnDown == policy.TableFailover {
			// The table's own source stays: the kernel accepts any local
			// address as preferred source, and replies keep the address
			// the peer knows.
			if a := alt.pick(gw); a != nil {
				r.Nexthops = []Nexthop{{Gateway: a.Address, Dev: a.Interface}}
			}
		}
		s.Routes = append(s.Routes, r)
	}
	for _, a := range p.Announces {
		r, ok := announceRoute(p, a, h, groupNH)
		if ok {
			r.Protocol = proto
			s.Routes = append(s.Routes, r)
		}
	}
	s.Routes = dedupeKeys(s.Routes)
	for _, pr := range p.Rules {
		r := Rule{
			Family:   pr.Family,
			Priority: pr.Priority,
			From:     pr.From,
			To:       pr.To,
			IIF:      pr.IIF,
			Table:    pr.Table,
			Protocol: proto,
			Owner:    "rule/" + pr.Name,
		}
		if pr.Mark != nil {
			r.Mark, r.Mask = pr.Mark.Value, pr.Mark.Mask
		}
		if len(pr.Name) > 8 && pr.Name[:8] == "gateway/" {
			r.Owner = pr.Name
		}
		s.Rules = append(s.Rules, r)
	}
	normalizeInPlace(&s)
	return s
}

// withoutUnresolved is p without the auto gateways that have learned no
// address (policy.Gateway.Unresolved): no route may name them, not even
// as a group's last resort or a table's kept route, since the kernel has
// nothing to send to; and without the groups whose VRF's table is not
// known (policy.Group.Unresolved). p itself is not changed.
func withoutUnresolved(p *policy.Policy) *policy.Policy {
	drop := map[string]bool{}
	for _, g := range p.Gateways {
		if g.Unresolved() {
			drop[g.Name] = true
		}
	}
	if len(drop) == 0 && !slices.ContainsFunc(p.Groups, (*policy.Group).Unresolved) {
		return p
	}
	var gws []*policy.Gateway
	for _, g := range p.Gateways {
		if !drop[g.Name] {
			gws = append(gws, g)
		}
	}
	groups := make([]*policy.Group, 0, len(p.Groups))
	for _, g := range p.Groups {
		if g.Unresolved() {
			continue // a VRF not read yet (absent): no table to write in
		}
		c := *g
		c.Gateways = slices.DeleteFunc(slices.Clone(g.Gateways), func(n string) bool { return drop[n] })
		groups = append(groups, &c)
	}
	return p.Derive(gws, groups)
}

// dedupeKeys keeps the first route of each kernel key. Two policy objects
// that want the same key (an announce of 0.0.0.0/0 in a group's table)
// would otherwise replace each other on every reconcile; groups come first,
// then gateway tables, then announces.
func dedupeKeys(routes []Route) []Route {
	seen := make(map[RouteKey]bool, len(routes))
	out := routes[:0]
	for _, r := range routes {
		if k := r.Key(); !seen[k] {
			seen[k] = true
			out = append(out, r)
		}
	}
	return out
}

// trackHealthy reports whether an announce's tracked gateway, group or
// condition is healthy: a gateway Up or Degraded, a group with any such
// member, a condition up.
func trackHealthy(p *policy.Policy, track string, h Snapshot) bool {
	if p.Condition(track) != nil {
		return ConditionUp(h, track)
	}
	if gw := p.Gateway(track); gw != nil {
		return h[gw.Name].Healthy()
	}
	if g := p.Group(track); g != nil {
		for _, name := range g.Gateways {
			if h[name].Healthy() {
				return true
			}
		}
	}
	return false
}

func announceRoute(p *policy.Policy, a *policy.Announce, h Snapshot, groupNH map[string][]Nexthop) (Route, bool) {
	if !trackHealthy(p, a.Track, h) {
		return Route{}, false
	}
	fam := policy.FamilyOf(a.Prefix.Addr())
	r := Route{
		Family: fam,
		Table:  a.Table,
		Dst:    a.Prefix.Masked(),
		Metric: metricFor(fam, a.Metric),
		Type:   Unicast,
		Owner:  "announce/" + a.Name,
	}
	switch a.Type {
	case policy.AnnounceBlackhole:
		r.Type = Blackhole
		return r, true
	case policy.AnnounceUnreachable:
		r.Type = Unreachable
		return r, true
	}
	switch {
	case a.Via.IsValid():
		r.Nexthops = []Nexthop{{Gateway: a.Via, Dev: a.Dev}}
	case a.Dev != "":
		r.Nexthops = []Nexthop{{Dev: a.Dev}}
	default:
		if gw := p.Gateway(a.Track); gw != nil {
			r.Nexthops = []Nexthop{{Gateway: gw.Address, Dev: gw.Interface}}
		} else {
			r.Nexthops = groupNH[a.Track]
		}
	}
	if len(r.Nexthops) == 0 {
		return Route{}, false
	}
	return r, true
}
