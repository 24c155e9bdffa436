package routing

import (
	"cmp"
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

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

func metricFor(family int, m uint32) uint32 {
	if family == 6 && m == 0 {
		return ip6DefaultMetric
	}
	return m
}

// effective is a gateway's tier and weight under its current health.
func effective(g *policy.Gateway, h Health) (tier, weight int) {
	if h == Degraded {
		return g.DegradedTier, g.DegradedWeight
	}
	return g.Tier, g.Weight
}

// groupNexthops returns the nexthops a group routes over now: the healthy
// members of the best tier. The best tier is the lowest one holding an Up
// member; only when no member is Up do degraded members alone decide it, so
// a degraded primary yields to an Up backup in a higher tier but still
// carries traffic when nothing better is left. Degraded members of the
// chosen tier join it with their degraded weight.
func groupNexthops(p *policy.Policy, g *policy.Group, h Snapshot) []Nexthop {
	best, bestUp := -1, false
	for _, name := range g.Gateways {
		gw := p.Gateway(name)
		if gw == nil {
			continue
		}
		st := h[name]
		if !st.Healthy() {
			continue
		}
		tier, _ := effective(gw, st)
		up := st == Up
		switch {
		case best < 0, up && !bestUp, up == bestUp && tier < best:
			best, bestUp = tier, up
		}
	}
	if best < 0 {
		return nil
	}
	var nhs []Nexthop
	for _, name := range g.Gateways {
		gw := p.Gateway(name)
		if gw == nil || !h[name].Healthy() {
			continue
		}
		tier, weight := effective(gw, h[name])
		if tier != best {
			continue
		}
		nhs = append(nhs, Nexthop{Gateway: gw.Address, Dev: gw.Interface, Weight: weight})
	}
	return normNexthops(nhs)
}

// allNexthops is every member of a group, as if healthy: last_resort "keep".
func allNexthops(p *policy.Policy, g *policy.Group) []Nexthop {
	var nhs []Nexthop
	for _, name := range g.Gateways {
		if gw := p.Gateway(name); gw != nil {
			nhs = append(nhs, Nexthop{Gateway: gw.Address, Dev: gw.Interface, Weight: gw.Weight})
		}
	}
	return normNexthops(nhs)
}

// failoverGateway picks the gateway a failed-over table routes through: the
// healthy gateway of the same family with the lowest tier, then the highest
// weight, then the first name.
func failoverGateway(p *policy.Policy, down *policy.Gateway, h Snapshot) *policy.Gateway {
	var best *policy.Gateway
	var bt, bw int
	for _, gw := range p.Gateways {
		if gw == down || gw.Is6() != down.Is6() || !h[gw.Name].Healthy() {
			continue
		}
		t, w := effective(gw, h[gw.Name])
		if best == nil || t < bt || t == bt && w > bw {
			best, bt, bw = gw, t, w
		}
	}
	return best
}

// Desired is the kernel state the policy wants under the given health. It is
// pure and deterministic: the same inputs give the same State, sorted.
func Desired(p *policy.Policy, h Snapshot) State {
	proto := p.Daemon.RouteProtocol
	var s State
	groupNH := map[string][]Nexthop{}
	for _, g := range p.Groups {
		r := Route{
			Family:   g.Family,
			Table:    g.Table,
			Dst:      defaultDst(g.Family),
			Metric:   metricFor(g.Family, g.Metric),
			Type:     Unicast,
			Protocol: proto,
			Owner:    "group/" + g.Name,
		}
		nhs := groupNexthops(p, g, h)
		groupNH[g.Name] = nhs
		switch {
		case len(nhs) > 0:
			r.Nexthops = nhs
		case g.LastResort == policy.LastResortKeep:
			r.Nexthops = allNexthops(p, g)
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
		fam := familyOf(gw.Address)
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
			if alt := failoverGateway(p, gw, h); alt != nil {
				r.Nexthops = []Nexthop{{Gateway: alt.Address, Dev: alt.Interface}}
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
	return Normalize(s)
}

// trackHealthy reports whether an announce's tracked gateway or group is
// healthy: a gateway Up or Degraded, a group with any such member.
func trackHealthy(p *policy.Policy, track string, h Snapshot) bool {
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
	fam := familyOf(a.Prefix.Addr())
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

// normNexthops sorts nexthops into the canonical order and drops the weight
// of a lone nexthop, which the kernel does not keep.
func normNexthops(nhs []Nexthop) []Nexthop {
	if len(nhs) == 0 {
		return nil
	}
	out := slices.Clone(nhs)
	for i := range out {
		out[i].Gateway = out[i].Gateway.WithZone("")
		if out[i].Weight < 1 {
			out[i].Weight = 1
		}
	}
	if len(out) == 1 {
		out[0].Weight = 0
		return out
	}
	slices.SortFunc(out, func(a, b Nexthop) int {
		if c := cmp.Compare(a.Dev, b.Dev); c != 0 {
			return c
		}
		return a.Gateway.Compare(b.Gateway)
	})
	return out
}

// Normalize returns s in canonical form: routes sorted by key, rules by
// priority, nexthops sorted, defaults the kernel would fill in filled in.
// Plan and Format work on normalized states, so two states that mean the
// same kernel state compare equal.
func Normalize(s State) State {
	out := State{}
	if len(s.Routes) > 0 {
		out.Routes = make([]Route, len(s.Routes))
	}
	for i, r := range s.Routes {
		r.Dst = r.Dst.Masked()
		r.Metric = metricFor(r.Family, r.Metric)
		if r.Type == 0 {
			r.Type = Unicast
		}
		if r.Type != Unicast {
			r.Nexthops = nil
			r.Src = netip.Addr{}
		} else {
			r.Nexthops = normNexthops(r.Nexthops)
		}
		out.Routes[i] = r
	}
	slices.SortStableFunc(out.Routes, func(a, b Route) int { return compareKey(a.Key(), b.Key()) })
	if len(s.Rules) > 0 {
		out.Rules = make([]Rule, len(s.Rules))
	}
	for i, r := range s.Rules {
		if r.From.IsValid() {
			r.From = r.From.Masked()
		}
		if r.To.IsValid() {
			r.To = r.To.Masked()
		}
		if r.Mask == 0 {
			r.Mark = 0
		}
		out.Rules[i] = r
	}
	slices.SortStableFunc(out.Rules, compareRule)
	return out
}

func compareKey(a, b RouteKey) int {
	if c := cmp.Compare(a.Family, b.Family); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Table, b.Table); c != 0 {
		return c
	}
	if c := a.Dst.Addr().Compare(b.Dst.Addr()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Dst.Bits(), b.Dst.Bits()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Metric, b.Metric); c != 0 {
		return c
	}
	return cmp.Compare(a.Tos, b.Tos)
}

func compareRule(a, b Rule) int {
	if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Family, b.Family); c != 0 {
		return c
	}
	return cmp.Compare(ruleText(a), ruleText(b))
}
