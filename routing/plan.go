package routing

import (
	"strconv"
)

// OpKind is what an Op does to the kernel.
type OpKind int

const (
	// OpAdd creates a route or rule on a key nothing holds.
	OpAdd OpKind = iota + 1
	// OpReplace changes an owned route in place (NLM_F_REPLACE), so the
	// key is never empty.
	OpReplace
	// OpDelete removes an owned route or rule.
	OpDelete
	// OpConflict writes nothing: a route of another protocol holds a key
	// uplinkd wants, and uplinkd never takes over what it does not own.
	OpConflict
)

func (k OpKind) String() string {
	switch k {
	case OpAdd:
		return "add"
	case OpReplace:
		return "replace"
	case OpDelete:
		return "delete"
	case OpConflict:
		return "conflict"
	}
	return "op(" + strconv.Itoa(int(k)) + ")"
}

// Object is the kind of kernel object an Op writes. Each has its own
// write path; an Op of a kind the reconciler does not know is an error,
// never a write through another kind's path.
type Object int

const (
	ObjRoute   Object = iota + 1 // Op.Route is set
	ObjRule                      // Op.Rule is set
	ObjNexthop                   // Op.Nexthop is set
)

func (o Object) String() string {
	switch o {
	case ObjRoute:
		return "route"
	case ObjRule:
		return "rule"
	case ObjNexthop:
		return "nexthop"
	}
	return "object(" + strconv.Itoa(int(o)) + ")"
}

// Op is one step of a plan: Kind done to an Object, whose field (Route or
// Rule) is set.
type Op struct {
	Kind   OpKind
	Object Object
	Route  *Route
	Rule   *Rule
	// Nexthop is the object of an ObjNexthop op; OldNexthop the installed
	// object a replace overwrites.
	Nexthop    *NexthopObj
	OldNexthop *NexthopObj
	// Old is the installed route a replace overwrites, or the foreign
	// route of a conflict.
	Old *Route
}

func routeOp(kind OpKind, r, old *Route) Op {
	return Op{Kind: kind, Object: ObjRoute, Route: r, Old: old}
}
func ruleOp(kind OpKind, r *Rule) Op { return Op{Kind: kind, Object: ObjRule, Rule: r} }

// String is the op as one `ip route`/`ip rule`-style line: "+ " for what
// will exist afterwards (add or replace), "- " for what will be deleted,
// "! " for a conflict that is left alone.
func (op Op) String() string {
	var text string
	switch op.Object {
	case ObjRule:
		text = RuleString(*op.Rule)
	case ObjRoute:
		text = RouteString(*op.Route)
	case ObjNexthop:
		text = "nexthop " + NexthopString(*op.Nexthop)
	}
	switch op.Kind {
	case OpDelete:
		return "- " + text
	case OpConflict:
		old := ""
		if op.Old != nil {
			old = RouteString(*op.Old)
		}
		return "! " + text + " (conflict: held by foreign route \"" + old + "\")"
	}
	return "+ " + text
}

// Lines renders the op for people: a replace shows the installed route
// being replaced ("- old") before the new one ("+ new").
func (op Op) Lines() []string {
	if op.Kind == OpReplace && op.OldNexthop != nil {
		return []string{"- nexthop " + NexthopString(*op.OldNexthop), op.String()}
	}
	if op.Kind == OpReplace && op.Old != nil {
		return []string{"- " + RouteString(*op.Old), op.String()}
	}
	return []string{op.String()}
}

// routeEqual reports whether the installed route have is what want asks
// for; Owner is ignored. A wanted nexthop without a device (an announce
// with only "via") matches whatever device the kernel resolved.
func routeEqual(want, have Route) bool {
	if want.Key() != have.Key() || want.Type != have.Type || want.Protocol != have.Protocol ||
		want.Src != have.Src || want.NHID != have.NHID {
		return false
	}
	if want.NHID != 0 {
		// The group object holds the members; planNexthops compares them.
		return true
	}
	if len(want.Nexthops) != len(have.Nexthops) {
		return false
	}
	for i, w := range want.Nexthops {
		h := have.Nexthops[i]
		if w.Gateway != h.Gateway || w.Weight != h.Weight || (w.Dev != "" && w.Dev != h.Dev) {
			return false
		}
	}
	return true
}

// Plan returns the ops that turn have into want, in a safe order: routes
// are added or replaced before the rules that point at them, new rules are
// added before old ones are deleted, and routes are deleted last.
//
// have holds the routes and rules uplinkd owns (their Protocol equals the
// protocol of want) plus any route of another protocol found on a key want
// uses; such a route is foreign and yields an OpConflict, never a write.
// A have route on a key want does not use is deleted only if it carries
// want's protocol (or want is empty, as for a withdraw of owned state).
func Plan(want, have State) []Op {
	if !normalized(want) {
		want = Normalize(want)
	}
	if !normalized(have) {
		have = Normalize(have)
	}
	proto, known := ownProtocol(want)
	ops, deletes := planRoutes(want, have, proto, known)
	adds, ruleDeletes := planRules(want, have, proto, known)
	ops = append(ops, adds...)
	ops = append(ops, ruleDeletes...)
	return append(ops, deletes...)
}

// planRoutes returns the route ops of Plan: adds, replaces and conflicts,
// then (apart) the deletes that go last.
func planRoutes(want, have State, proto uint8, known bool) (ops, deletes []Op) {
	haveByKey := map[RouteKey][]int{}
	for i, r := range have.Routes {
		haveByKey[r.Key()] = append(haveByKey[r.Key()], i)
	}
	wantKeys := map[RouteKey]bool{}
	for i := range want.Routes {
		w := &want.Routes[i]
		k := w.Key()
		wantKeys[k] = true
		owned := haveByKey[k][:0:0]
		for _, j := range haveByKey[k] {
			if have.Routes[j].Protocol == w.Protocol {
				owned = append(owned, j)
			}
		}
		switch f := foreignOn(have, haveByKey[k], w.Protocol); {
		case f != nil:
			ops = append(ops, routeOp(OpConflict, w, f))
		case len(owned) == 0:
			ops = append(ops, routeOp(OpAdd, w, nil))
		default:
			if cur := &have.Routes[owned[0]]; !routeEqual(*w, *cur) {
				ops = append(ops, routeOp(OpReplace, w, cur))
			}
			// Duplicates on one key (ip route append) would make the
			// kernel's choice between them arbitrary.
			for _, j := range owned[1:] {
				deletes = append(deletes, routeOp(OpDelete, &have.Routes[j], nil))
			}
		}
	}
	for i := range have.Routes {
		h := &have.Routes[i]
		if wantKeys[h.Key()] || (known && h.Protocol != proto) || (!known && mergedInto(have, haveByKey[h.Key()], h)) {
			continue
		}
		// An IPv6 delete by key and protocol takes every sibling of the
		// route, a foreign nexthop merged into it included.
		if f := foreignOn(have, haveByKey[h.Key()], h.Protocol); f != nil && h.Family == 6 {
			ops = append(ops, routeOp(OpConflict, h, f))
			continue
		}
		deletes = append(deletes, routeOp(OpDelete, h, nil))
	}
	return ops, deletes
}

// planRules returns the rule adds and deletes of Plan. Both rule lists are
// sorted by every field but Owner, so one merge pass finds them: linear
// for 10,000 rules.
func planRules(want, have State, proto uint8, known bool) (adds, deletes []Op) {
	i, j := 0, 0
	for i < len(want.Rules) || j < len(have.Rules) {
		var c int
		switch {
		case i == len(want.Rules):
			c = 1
		case j == len(have.Rules):
			c = -1
		default:
			c = compareRule(want.Rules[i], have.Rules[j])
		}
		switch {
		case c == 0:
			i++
			j++
		case c < 0:
			adds = append(adds, ruleOp(OpAdd, &want.Rules[i]))
			i++
		default:
			if h := &have.Rules[j]; !known || h.Protocol == proto {
				deletes = append(deletes, ruleOp(OpDelete, h))
			}
			j++
		}
	}
	return adds, deletes
}

// foreignOn returns a route among have's idx whose protocol is not proto.
func foreignOn(have State, idx []int, proto uint8) *Route {
	for _, j := range idx {
		if have.Routes[j].Protocol != proto {
			return &have.Routes[j]
		}
	}
	return nil
}

// mergedInto reports whether h is a foreign nexthop merged into a route of
// another protocol on its key (protocol 0, see splitMerged): with want
// empty, as for a withdraw, it is not uplinkd's to delete.
func mergedInto(have State, idx []int, h *Route) bool {
	return h.Protocol == 0 && h.Family == 6 && foreignOn(have, idx, 0) != nil
}

func ownProtocol(s State) (uint8, bool) {
	for _, r := range s.Routes {
		return r.Protocol, true
	}
	for _, r := range s.Rules {
		return r.Protocol, true
	}
	return 0, false
}
