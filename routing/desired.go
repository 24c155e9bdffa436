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

// Desired is the kernel state the policy wants under the given health. It is
// pure and deterministic: the same inputs give the same State, sorted.
func Desired(p *policy.Policy, h Snapshot) State {
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
			Family:   g.Family,
			Table:    g.Table,
			Dst:      defaultDst(g.Family),
			Metric:   metricFor(g.Family, g.Metric),
			Type:     Unicast,
			Protocol: proto,
			Owner:    "group/" + g.Name,
		}
		nhs := groupNexthops(gws, g, h)
		groupNH[g.Name] = nhs
		switch {
		case len(nhs) > 0:
			r.Nexthops = nhs
		case g.LastResort == policy.LastResortKeep:
			r.Nexthops = allNexthops(gws, g)
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
	slices.SortFunc(out, compareNexthop)
	return out
}

// Normalize returns s in canonical form: routes sorted by key, rules by
// priority, nexthops sorted, defaults the kernel would fill in filled in.
// Plan and Format work on normalized states, so two states that mean the
// same kernel state compare equal. s itself is not modified.
func Normalize(s State) State {
	out := State{Routes: slices.Clone(s.Routes), Rules: slices.Clone(s.Rules)}
	normalizeInPlace(&out)
	return out
}

// normalized reports whether s is already in canonical form, so that Plan
// can skip copying and sorting 10,000 rules on the hot path.
func normalized(s State) bool {
	for i := range s.Routes {
		r := &s.Routes[i]
		if r.Dst != r.Dst.Masked() || r.Metric != metricFor(r.Family, r.Metric) || r.Type == 0 ||
			(r.Type != Unicast && (len(r.Nexthops) > 0 || r.Src.IsValid())) || !nexthopsNormal(r.Nexthops) {
			return false
		}
		if i > 0 && compareKey(s.Routes[i-1].Key(), r.Key()) > 0 {
			return false
		}
	}
	for i := range s.Rules {
		r := &s.Rules[i]
		if r.From != r.From.Masked() || r.To != r.To.Masked() || (r.Mask == 0 && r.Mark != 0) {
			return false
		}
		if i > 0 && compareRule(s.Rules[i-1], *r) > 0 {
			return false
		}
	}
	return true
}

func nexthopsNormal(nhs []Nexthop) bool {
	if len(nhs) == 1 {
		return nhs[0].Weight == 0 && nhs[0].Gateway.Zone() == ""
	}
	for i, nh := range nhs {
		if nh.Weight < 1 || nh.Gateway.Zone() != "" {
			return false
		}
		if i > 0 && compareNexthop(nhs[i-1], nh) > 0 {
			return false
		}
	}
	return true
}

func compareNexthop(a, b Nexthop) int {
	if c := cmp.Compare(a.Dev, b.Dev); c != 0 {
		return c
	}
	return a.Gateway.Compare(b.Gateway)
}

func normalizeInPlace(s *State) {
	for i := range s.Routes {
		r := &s.Routes[i]
		r.Dst = r.Dst.Masked()
		r.Metric = metricFor(r.Family, r.Metric)
		if r.Type == 0 {
			r.Type = Unicast
		}
		if r.Type != Unicast {
			r.Nexthops = nil
			r.Src = netip.Addr{}
		} else if !nexthopsNormal(r.Nexthops) {
			r.Nexthops = normNexthops(r.Nexthops)
		}
	}
	if !slices.IsSortedFunc(s.Routes, func(a, b Route) int { return compareKey(a.Key(), b.Key()) }) {
		slices.SortStableFunc(s.Routes, func(a, b Route) int { return compareKey(a.Key(), b.Key()) })
	}
	for i := range s.Rules {
		r := &s.Rules[i]
		if r.From.IsValid() {
			r.From = r.From.Masked()
		}
		if r.To.IsValid() {
			r.To = r.To.Masked()
		}
		if r.Mask == 0 {
			r.Mark = 0
		}
	}
	if !slices.IsSortedFunc(s.Rules, compareRule) {
		slices.SortStableFunc(s.Rules, compareRule)
	}
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

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// compareRule orders rules as the kernel evaluates them (by priority),
// then by every selector so that the order is total and deterministic.
func compareRule(a, b Rule) int {
	if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Family, b.Family); c != 0 {
		return c
	}
	if c := comparePrefix(a.From, b.From); c != 0 {
		return c
	}
	if c := comparePrefix(a.To, b.To); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Mark, b.Mark); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Mask, b.Mask); c != 0 {
		return c
	}
	if c := cmp.Compare(a.IIF, b.IIF); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Table, b.Table); c != 0 {
		return c
	}
	return cmp.Compare(a.Protocol, b.Protocol)
}
