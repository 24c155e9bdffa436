package routing

import (
	"fmt"
	"strconv"
	"strings"
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

// Op is one step of a plan. Exactly one of Route and Rule is set.
type Op struct {
	Kind  OpKind
	Route *Route
	Rule  *Rule
	// Old is the installed route a replace overwrites, or the foreign
	// route of a conflict.
	Old *Route
}

// Object is "route" or "rule", the metric label of the op.
func (op Op) Object() string {
	if op.Rule != nil {
		return "rule"
	}
	return "route"
}

// String is the op as one `ip route`/`ip rule`-style line: "+ " for what
// will exist afterwards (add or replace), "- " for what will be deleted,
// "! " for a conflict that is left alone.
func (op Op) String() string {
	var text string
	if op.Rule != nil {
		text = RuleString(*op.Rule)
	} else if op.Route != nil {
		text = RouteString(*op.Route)
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
		want.Src != have.Src || len(want.Nexthops) != len(have.Nexthops) {
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

	haveByKey := map[RouteKey][]int{}
	for i, r := range have.Routes {
		haveByKey[r.Key()] = append(haveByKey[r.Key()], i)
	}
	wantKeys := map[RouteKey]bool{}
	var ops, deletes []Op
	for i := range want.Routes {
		w := &want.Routes[i]
		k := w.Key()
		wantKeys[k] = true
		var owned []int
		var foreign *Route
		for _, j := range haveByKey[k] {
			if have.Routes[j].Protocol == w.Protocol {
				owned = append(owned, j)
			} else if foreign == nil {
				foreign = &have.Routes[j]
			}
		}
		switch {
		case foreign != nil:
			ops = append(ops, Op{Kind: OpConflict, Route: w, Old: foreign})
		case len(owned) == 0:
			ops = append(ops, Op{Kind: OpAdd, Route: w})
		default:
			cur := &have.Routes[owned[0]]
			if !routeEqual(*w, *cur) {
				ops = append(ops, Op{Kind: OpReplace, Route: w, Old: cur})
			}
			// Duplicates on one key (ip route append) would make the
			// kernel's choice between them arbitrary.
			for _, j := range owned[1:] {
				deletes = append(deletes, Op{Kind: OpDelete, Route: &have.Routes[j]})
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
			ops = append(ops, Op{Kind: OpConflict, Route: h, Old: f})
			continue
		}
		deletes = append(deletes, Op{Kind: OpDelete, Route: h})
	}

	// Both rule lists are sorted by every field but Owner, so one merge
	// pass finds what to add and delete: linear for 10,000 rules.
	var ruleDeletes []Op
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
			ops = append(ops, Op{Kind: OpAdd, Rule: &want.Rules[i]})
			i++
		default:
			if h := &have.Rules[j]; !known || h.Protocol == proto {
				ruleDeletes = append(ruleDeletes, Op{Kind: OpDelete, Rule: h})
			}
			j++
		}
	}
	ops = append(ops, ruleDeletes...)
	return append(ops, deletes...)
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

func tableName(t uint32) string {
	switch t {
	case 254:
		return "main"
	case 253:
		return "default"
	}
	return strconv.FormatUint(uint64(t), 10)
}

// RouteString renders a route as `ip route` would, with "-6 " in front of
// IPv6 routes so one dump can hold both families, and multipath nexthops on
// the same line.
func RouteString(r Route) string {
	var b strings.Builder
	if r.Family == 6 {
		b.WriteString("-6 ")
	}
	if r.Type != Unicast && r.Type != 0 {
		b.WriteString(r.Type.String())
		b.WriteByte(' ')
	}
	if r.Dst.Bits() == 0 {
		b.WriteString("default")
	} else {
		b.WriteString(r.Dst.String())
	}
	if len(r.Nexthops) == 1 {
		writeNexthop(&b, r.Nexthops[0], false)
	}
	fmt.Fprintf(&b, " table %s proto %d", tableName(r.Table), r.Protocol)
	if r.Src.IsValid() {
		fmt.Fprintf(&b, " src %s", r.Src)
	}
	if r.Metric != 0 {
		fmt.Fprintf(&b, " metric %d", r.Metric)
	}
	if r.Tos != 0 {
		fmt.Fprintf(&b, " tos 0x%x", r.Tos)
	}
	if len(r.Nexthops) > 1 {
		for _, nh := range r.Nexthops {
			b.WriteString(" nexthop")
			writeNexthop(&b, nh, true)
		}
	}
	return b.String()
}

func writeNexthop(b *strings.Builder, nh Nexthop, weight bool) {
	if nh.Gateway.IsValid() {
		fmt.Fprintf(b, " via %s", nh.Gateway)
	}
	if nh.Dev != "" {
		fmt.Fprintf(b, " dev %s", nh.Dev)
	}
	if weight {
		fmt.Fprintf(b, " weight %d", max(nh.Weight, 1))
	}
}

// RuleString renders a rule as `ip rule` would ("-6 " in front of IPv6).
func RuleString(r Rule) string {
	var b strings.Builder
	if r.Family == 6 {
		b.WriteString("-6 ")
	}
	fmt.Fprintf(&b, "%d: ", r.Priority)
	b.WriteString(ruleText(r))
	return b.String()
}

func ruleText(r Rule) string {
	var b strings.Builder
	if r.From.IsValid() && r.From.Bits() > 0 {
		fmt.Fprintf(&b, "from %s", prefixText(r.From))
	} else {
		b.WriteString("from all")
	}
	if r.To.IsValid() && r.To.Bits() > 0 {
		fmt.Fprintf(&b, " to %s", prefixText(r.To))
	}
	if r.Mask != 0 {
		if r.Mask == 0xffffffff {
			fmt.Fprintf(&b, " fwmark 0x%x", r.Mark)
		} else {
			fmt.Fprintf(&b, " fwmark 0x%x/0x%x", r.Mark, r.Mask)
		}
	}
	if r.IIF != "" {
		fmt.Fprintf(&b, " iif %s", r.IIF)
	}
	fmt.Fprintf(&b, " lookup %s proto %d", tableName(r.Table), r.Protocol)
	return b.String()
}

// prefixText prints a host prefix as a bare address, as ip does.
func prefixText(p interface {
	Bits() int
	String() string
}) string {
	s := p.String()
	if i := strings.IndexByte(s, '/'); i >= 0 {
		if bits := s[i+1:]; bits == "32" || bits == "128" {
			return s[:i]
		}
	}
	return s
}

// Format renders a state as a sorted dump, rules first and then routes, one
// per line: the golden form used by tests and `uplinkd plan`.
func Format(s State) string {
	s = Normalize(s)
	var b strings.Builder
	for _, r := range s.Rules {
		b.WriteString(RuleString(r))
		b.WriteByte('\n')
	}
	for _, r := range s.Routes {
		b.WriteString(RouteString(r))
		b.WriteByte('\n')
	}
	return b.String()
}
