package routing

// This file reads what the kernel holds: owned routes and rules, the
// foreign routes on wanted keys, and what of want can be written at all.

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
)

// readOwned reads the owned routes and rules, and the routes of other
// protocols on keys want uses that no owned route holds. An interrupted
// dump is retried.
//
// Owned routes come from one dump per family that asks the kernel for
// Protocol only (rtm_protocol with NETLINK_GET_STRICT_CHK, see Kernel), so
// a full BGP table elsewhere is walked in the kernel and never copied out.
// Foreign routes matter only on a key uplinkd wants but does not hold: that
// is where an add would meet EEXIST, and where a foreign route that replaced
// an owned one now sits. Only the tables of such keys are dumped, and only
// when there are any, so a steady-state resync reads nothing foreign. A
// foreign route sharing a key with an owned one (ip route prepend/append)
// is looked for, with all, in the tables of every wanted key: a replace
// would take over the first route on the key, which may be the foreign
// one. The reconciler asks for that only when it suspects one (see
// Reconciler.suspect).
func (r *Reconciler) readOwned(want *State, l links, all bool) (State, []Route, error) {
	var err error
	for attempt := 0; attempt < dumpRetries; attempt++ {
		var s State
		var foreign []Route
		s, err = r.dumpOwned(l)
		if err == nil {
			foreign, err = r.dumpForeign(want, s.Routes, l, all)
		}
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			r.cfg.Metrics.resync(ReasonDumpInterrupted)
			continue
		}
		if err != nil {
			return State{}, nil, fmt.Errorf("reading owned routes and rules: %w", err)
		}
		return Normalize(s), foreign, nil
	}
	return State{}, nil, fmt.Errorf("reading owned routes and rules: %w", err)
}

// dumpOwned dumps the routes (every table, both families) and rules of
// the reconciler's protocol. Rule dumps cannot be filtered by the kernel
// (a strict kernel rejects any selector in a rule dump request), but they
// are small: a rule list never holds a routing table.
func (r *Reconciler) dumpOwned(l links) (State, error) {
	proto := r.cfg.Protocol
	var s State
	for _, fam := range []int{4, 6} {
		err := r.nl.RouteListFilteredIter(afOf(fam), &netlink.Route{Protocol: netlink.RouteProtocol(proto)}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL, func(nr netlink.Route) bool {
			if nr.Family == afOf(fam) && uint8(nr.Protocol) == proto {
				s.Routes = append(s.Routes, fromNetlinkRoute(nr, l))
			}
			return true
		})
		if err != nil {
			return State{}, fmt.Errorf("dumping IPv%d routes of protocol %d: %w", fam, proto, err)
		}
	}
	rules, err := r.nl.RuleListFiltered(netlink.FAMILY_ALL, nil, 0)
	if err != nil {
		return State{}, fmt.Errorf("dumping rules: %w", err)
	}
	for _, nr := range rules {
		if nr.Protocol == proto && (nr.Family == afOf(4) || nr.Family == afOf(6)) {
			s.Rules = append(s.Rules, fromNetlinkRule(nr))
		}
	}
	return s, nil
}

// famTable is one routing table of one family.
type famTable struct {
	family int
	table  uint32
}

// dumpForeign returns the routes of other protocols on keys of want that
// no owned route holds, dumping only the tables of those keys; with all,
// on every key of want, held or not, since `ip route prepend` and
// `append` put a foreign route beside an owned one on its key. That costs
// a dump of each wanted table (main beside a BGP table), so it is done
// only when the reconciler suspects one (see Reconciler.suspect).
func (r *Reconciler) dumpForeign(want *State, owned []Route, l links, all bool) ([]Route, error) {
	if want == nil || len(want.Routes) == 0 {
		return nil, nil
	}
	held := make(map[RouteKey]bool, len(owned))
	for _, o := range owned {
		held[o.Key()] = true
	}
	missing := map[RouteKey]bool{}
	var tables []famTable
	seen := map[famTable]bool{}
	for _, w := range want.Routes {
		k := w.Key()
		if held[k] && !all {
			continue
		}
		missing[k] = true
		if ft := (famTable{w.Family, w.Table}); !seen[ft] {
			seen[ft] = true
			tables = append(tables, ft)
		}
	}
	proto := r.cfg.Protocol
	var foreign []Route
	for _, ft := range tables {
		err := r.nl.RouteListFilteredIter(afOf(ft.family), &netlink.Route{Table: int(ft.table)}, netlink.RT_FILTER_TABLE, func(nr netlink.Route) bool {
			if nr.Family != afOf(ft.family) || uint8(nr.Protocol) == proto {
				return true
			}
			if rt := fromNetlinkRoute(nr, l); missing[rt.Key()] {
				foreign = append(foreign, rt)
			}
			return true
		})
		if err != nil {
			return nil, fmt.Errorf("dumping IPv%d table %d for routes on wanted keys: %w", ft.family, ft.table, err)
		}
	}
	return foreign, nil
}

// ReadOwned returns the routes and rules of the reconciler's protocol
// currently in the kernel, with any foreign routes on keys of want.
func (r *Reconciler) ReadOwned(want State) (State, error) {
	l, err := readLinks(r.nl)
	if err != nil {
		return State{}, err
	}
	w := Normalize(want)
	s, foreign, err := r.readOwned(&w, l, true)
	if err != nil {
		return State{}, err
	}
	s, merged := splitMerged(s, nil)
	foreign = append(foreign, merged...)
	s.Routes = append(s.Routes, foreign...)
	return Normalize(s), nil
}

// splitMerged takes out of each owned IPv6 route the nexthops ownNH does
// not know for its key, and returns them as foreign routes on that key
// (protocol 0: the kernel does not say whose a sibling is). A key ownNH
// has no record of is adopted as read, as at the first read after a start;
// a nil ownNH (a one-off read) adopts everything. Keys with no owned route
// lose their record.
func splitMerged(have State, ownNH map[RouteKey][]Nexthop) (State, []Route) {
	if ownNH == nil {
		return have, nil
	}
	var merged []Route
	seen := map[RouteKey]bool{}
	out := State{Rules: have.Rules, Routes: make([]Route, 0, len(have.Routes))}
	for _, rt := range have.Routes {
		k := rt.Key()
		seen[k] = true
		rec, ok := ownNH[k]
		if rt.Family != 6 || rt.Type != Unicast {
			out.Routes = append(out.Routes, rt)
			continue
		}
		if !ok {
			ownNH[k] = rt.Nexthops
			out.Routes = append(out.Routes, rt)
			continue
		}
		var mine, theirs []Nexthop
		for _, nh := range rt.Nexthops {
			if slices.ContainsFunc(rec, func(o Nexthop) bool { return o.Gateway == nh.Gateway && o.Dev == nh.Dev }) {
				mine = append(mine, nh)
			} else {
				theirs = append(theirs, nh)
			}
		}
		if len(theirs) == 0 {
			out.Routes = append(out.Routes, rt)
			continue
		}
		f := rt
		f.Protocol, f.Owner, f.Nexthops = 0, "merged", normNexthops(theirs)
		merged = append(merged, f)
		if len(mine) > 0 {
			rt.Nexthops = normNexthops(mine)
			out.Routes = append(out.Routes, rt)
		}
	}
	for k := range ownNH {
		if !seen[k] {
			delete(ownNH, k)
		}
	}
	return out, merged
}

// writable is want without the nexthops whose interface does not exist,
// or whose gateway is not on-link there (links.reachable: the address or
// subnet that made it so is gone, a released lease). The kernel refuses a
// route naming a missing device or an unreachable gateway, and drops a
// whole multipath route when one of its devices goes away; asking for the
// missing member anyway would leave the host with no route at all where
// the other members could still carry one (last_resort "keep" with every
// gateway down and one interface unplugged). A route left with no nexthop
// cannot exist and is not wanted. The cut is logged once per change.
func (r *Reconciler) writable(want State, l links) State {
	var gone []string
	out := State{Rules: want.Rules, Routes: make([]Route, 0, len(want.Routes))}
	for _, rt := range want.Routes {
		keep := rt.Nexthops[:0:0]
		for _, nh := range rt.Nexthops {
			if _, ok := l.byName[nh.Dev]; nh.Dev != "" && !ok {
				gone = append(gone, nh.Dev+" ("+RouteString(rt)+")")
				continue
			}
			if nh.Dev != "" && !l.reachable(nh.Gateway, nh.Dev) {
				gone = append(gone, nh.Gateway.String()+" not on-link on "+nh.Dev+" ("+RouteString(rt)+")")
				continue
			}
			keep = append(keep, nh)
		}
		if len(keep) == len(rt.Nexthops) {
			out.Routes = append(out.Routes, rt)
			continue
		}
		if len(keep) > 0 {
			rt.Nexthops = normNexthops(keep)
			out.Routes = append(out.Routes, rt)
		}
	}
	if len(gone) == 0 {
		r.vanished = ""
		return want
	}
	if msg := strings.Join(gone, "; "); msg != r.vanished {
		r.vanished = msg
		r.log.Warn("leaving out nexthops whose interface is gone or whose gateway is not on-link", "nexthops", msg)
	}
	return out
}
