package routing

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/uplinkd/uplinkd/policy"
)

// Withdrawn returns, sorted, the gateways that installed (the kernel state a
// previous instance left, read at start) shows as withdrawn. A restart
// adopts that verdict instead of starting every gateway up, so a dead
// gateway is not written back into a route only to be withdrawn again a
// few hundred milliseconds later.
//
// The evidence about a gateway is the routes whose nexthops depend on its
// health: those that go through it while it is up and not while it is
// down (a group's route, a failover table, an announce tracking it). A
// table that keeps its gateway whatever happens says nothing. A gateway
// that one of those routes, as installed, does not go through is
// withdrawn; a missing route counts as one without it (last_resort =
// "remove"). One is enough: a failover table with nowhere to fail over to
// keeps its dead gateway, and a crash halfway through an apply leaves
// routes that disagree, where starting down is the safe side (up_count
// good probes bring the gateway back).
//
// Only routes of protocol p.Daemon.RouteProtocol count, and a key held by
// another program's route is no evidence either way. An installed state
// with no route and no rule of the protocol is a first start: nothing was
// left, so nothing was withdrawn.
//
// Withdrawing a gateway can bring a backup tier into a group's route; the
// search repeats until no more gateways fall, so a dead backup behind a
// dead primary is found too. Standby gateways, kept out of the route by a
// healthy better tier, have no evidence and are never reported.
func Withdrawn(p *policy.Policy, installed State) []string {
	return Adopt(p, installed).Withdrawn
}

// Adopted is what a restart takes over from the kernel state a previous
// instance left: the gateways it had withdrawn, and the conditions it had
// up. Both sorted. Routeless names the conditions that gate no route (no
// group's condition, no announce's track): the routes say nothing about
// them either way, and the caller may know better (the daemon's own track
// files).
type Adopted struct {
	Withdrawn  []string
	Conditions []string
	Routeless  []string
}

// Adopt reads installed as Withdrawn does, and also finds the conditions
// that were up. A condition starts down, so without this a restart
// withdraws every route it gates (a group's default, an announce tracking
// it) and reinstates it once the terms hold again, hold_up later: two
// writes and an outage at every restart, and a failover IP released and
// claimed again.
//
// The evidence about a condition is a key whose route differs with the
// condition up and down: an owned route there, of a form the condition
// down would not give (a route where none would be, or other nexthops or
// type), made of uplinkd's own nexthops, shows it up. A key held by
// another program says nothing; with no evidence the condition starts
// down, as on a first start. The policy may have changed between the
// instances; a condition adopted up wrongly is corrected by the first
// evaluation, while the start hold keeps the routes as left.
//
// Gateways and conditions depend on each other (a gated group shows its
// members' health only while its condition is up), so both searches run
// together until neither finds more.
func Adopt(p *policy.Policy, installed State) Adopted {
	proto := p.Daemon.RouteProtocol
	owned := map[RouteKey]Route{}
	foreign := map[RouteKey]bool{}
	for _, r := range installed.Routes {
		if r.Protocol == proto {
			owned[r.Key()] = r
		} else {
			foreign[r.Key()] = true
		}
	}
	rules := 0
	for _, r := range installed.Rules {
		if r.Protocol == proto {
			rules++
		}
	}
	var routeless []string
	for _, c := range p.Conditions {
		if len(gatedBy(p, c.Name)) == 0 {
			routeless = append(routeless, c.Name)
		}
	}
	slices.Sort(routeless)
	if len(owned) == 0 && rules == 0 {
		return Adopted{Routeless: routeless}
	}
	a := adoption{p: p, owned: owned, foreign: foreign, have: hopsByKey(owned), ours: ourHops(p), h: Snapshot{}}
	for {
		rose := a.conditionsUp()
		if fell := a.gatewaysDown(); !rose && !fell {
			break
		}
	}
	out := Adopted{Routeless: routeless}
	for name, st := range a.h {
		cond, isCond := strings.CutPrefix(name, conditionPrefix)
		switch {
		case isCond && st == Up:
			out.Conditions = append(out.Conditions, cond)
		case !isCond && st == Down:
			out.Withdrawn = append(out.Withdrawn, name)
		}
	}
	slices.Sort(out.Withdrawn)
	slices.Sort(out.Conditions)
	return out
}

// adoption is Adopt's search state.
type adoption struct {
	p       *policy.Policy
	owned   map[RouteKey]Route
	foreign map[RouteKey]bool
	have    map[RouteKey]map[hop]bool
	ours    map[hop]bool // every gateway's hop: what an owned route may go through
	h       Snapshot
}

// gatewaysDown marks down the gateways the owned routes show withdrawn,
// given what is known so far, and reports whether any fell.
func (a *adoption) gatewaysDown() bool {
	fell := false
	up := byKey(Desired(a.p, a.h))
	wantKeys := keysByHop(up)
	for _, g := range a.p.Gateways {
		if a.h[g.Name] == Down {
			continue
		}
		hop := hopOf(g.Address, g.Interface)
		// Cheap first: the keys that want g but lack it. Only those
		// need the (costly) check that g's health decides them.
		var lacking []RouteKey
		for _, k := range wantKeys[hop] {
			if !a.foreign[k] && !a.have[k][hop] {
				lacking = append(lacking, k)
			}
		}
		if len(lacking) == 0 {
			continue
		}
		down := byKey(Desired(a.p, with(a.h, g.Name, Down)))
		for _, k := range lacking {
			if !hasHop(down[k], hop) {
				a.h[g.Name] = Down
				fell = true
				break
			}
		}
	}
	return fell
}

// conditionsUp marks up the conditions the owned routes show up, and
// reports whether any rose.
func (a *adoption) conditionsUp() bool {
	rose := false
	for _, c := range a.p.Conditions {
		if ConditionUp(a.h, c.Name) {
			continue
		}
		key := ConditionKey(c.Name)
		down := byKey(Desired(a.p, a.h))
		gated := gatedBy(a.p, c.Name)
		for k, r := range byKey(Desired(a.p, with(a.h, key, Up))) {
			if !gated[r.Owner] || a.foreign[k] {
				continue
			}
			if a.madeWithConditionUp(k, r, down) {
				a.h[key] = Up
				rose = true
				break
			}
		}
	}
	return rose
}

// gatedBy is the owners of the routes condition name decides: the groups
// it gates and the announces tracking it. Only their keys are evidence;
// comparing the condition's up and down forms would miss a gated group
// with last_resort = "keep" whose withdrawn member is not known yet (its
// up form, with every member up, is the keep form).
func gatedBy(p *policy.Policy, name string) map[string]bool {
	out := map[string]bool{}
	for _, g := range p.Groups {
		if g.Condition == name {
			out["group/"+g.Name] = true
		}
	}
	for _, an := range p.Announces {
		if an.Track == name {
			out["announce/"+an.Name] = true
		}
	}
	return out
}

// madeWithConditionUp says the owned route at k is one the condition down
// would not have written: present where the down form is absent, or of
// another form, and through uplinkd's own gateways or the hops of up,
// the condition's up form (an announce's dev-only nexthop), only.
func (a *adoption) madeWithConditionUp(k RouteKey, up Route, down map[RouteKey]Route) bool {
	r, ok := a.owned[k]
	if !ok {
		return false
	}
	if d, dok := down[k]; sameForm(r, d, dok) {
		return false
	}
	for _, nh := range r.Nexthops {
		if h := hopOf(nh.Gateway, nh.Dev); !a.ours[h] && !hasHop(up, h) {
			return false
		}
	}
	return true
}

// sameForm says r and o (when ok: o exists) are routes of the same type
// through the same hops.
func sameForm(r, o Route, ok bool) bool {
	if !ok || o.Type != r.Type || len(o.Nexthops) != len(r.Nexthops) {
		return false
	}
	for _, nh := range r.Nexthops {
		if !hasHop(o, hopOf(nh.Gateway, nh.Dev)) {
			return false
		}
	}
	return true
}

// ourHops is every policy gateway's hop.
func ourHops(p *policy.Policy) map[hop]bool {
	out := make(map[hop]bool, len(p.Gateways))
	for _, g := range p.Gateways {
		out[hopOf(g.Address, g.Interface)] = true
	}
	return out
}

func byKey(s State) map[RouteKey]Route {
	m := make(map[RouteKey]Route, len(s.Routes))
	for _, r := range s.Routes {
		m[r.Key()] = r
	}
	return m
}

// with is h with one gateway's health changed.
func with(h Snapshot, name string, st Health) Snapshot {
	out := make(Snapshot, len(h)+1)
	for k, v := range h {
		out[k] = v
	}
	out[name] = st
	return out
}

// hop is a nexthop as Withdrawn matches it: gateway and device.
type hop struct {
	gw  netip.Addr
	dev string
}

func hopOf(gw netip.Addr, dev string) hop { return hop{gw, dev} }

// hopsByKey is, per route key, the set of hops its route goes through.
func hopsByKey(routes map[RouteKey]Route) map[RouteKey]map[hop]bool {
	out := make(map[RouteKey]map[hop]bool, len(routes))
	for k, r := range routes {
		set := make(map[hop]bool, len(r.Nexthops))
		for _, nh := range r.Nexthops {
			set[hopOf(nh.Gateway, nh.Dev)] = true
		}
		out[k] = set
	}
	return out
}

// keysByHop is, per hop, the keys of the routes that go through it.
func keysByHop(routes map[RouteKey]Route) map[hop][]RouteKey {
	out := map[hop][]RouteKey{}
	for k, r := range routes {
		for _, nh := range r.Nexthops {
			h := hopOf(nh.Gateway, nh.Dev)
			out[h] = append(out[h], k)
		}
	}
	return out
}

// hasHop reports whether r goes through hop's gateway on hop's device.
func hasHop(r Route, h hop) bool {
	for _, nh := range r.Nexthops {
		if nh.Gateway == h.gw && nh.Dev == h.dev {
			return true
		}
	}
	return false
}
