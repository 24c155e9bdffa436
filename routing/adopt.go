package routing

import (
	"net/netip"
	"slices"

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
	if len(owned) == 0 && rules == 0 {
		return nil
	}
	have := hopsByKey(owned)
	h := Snapshot{}
	for {
		fell := false
		up := byKey(Desired(p, h))
		wantKeys := keysByHop(up)
		for _, g := range p.Gateways {
			if h[g.Name] == Down {
				continue
			}
			hop := hopOf(g.Address, g.Interface)
			// Cheap first: the keys that want g but lack it. Only those
			// need the (costly) check that g's health decides them.
			var lacking []RouteKey
			for _, k := range wantKeys[hop] {
				if !foreign[k] && !have[k][hop] {
					lacking = append(lacking, k)
				}
			}
			if len(lacking) == 0 {
				continue
			}
			down := byKey(Desired(p, with(h, g.Name, Down)))
			for _, k := range lacking {
				if !hasHop(down[k], hop) {
					h[g.Name] = Down
					fell = true
					break
				}
			}
		}
		if !fell {
			break
		}
	}
	var out []string
	for name, st := range h {
		if st == Down {
			out = append(out, name)
		}
	}
	slices.Sort(out)
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
