package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Match is how a condition combines its terms.
type Match string

// Condition combinators.
const (
	MatchAll     Match = "all"      // every term holds
	MatchAny     Match = "any"      // at least one term holds
	MatchAtLeast Match = "at_least" // at least AtLeast terms hold
)

// TermKind is what a condition term looks at.
type TermKind string

// Term kinds, as written first in a term.
const (
	TermGateway   TermKind = "gateway"   // gateway NAME up|degraded|down
	TermGroup     TermKind = "group"     // group NAME up|down
	TermLink      TermKind = "link"      // link IFACE up|down
	TermAddress   TermKind = "address"   // address ADDR on IFACE
	TermCondition TermKind = "condition" // condition NAME
	TermFile      TermKind = "file"      // file /ABSOLUTE/PATH
)

// TermKinds lists every term kind, for errors and docs.
var TermKinds = []TermKind{TermGateway, TermGroup, TermLink, TermAddress, TermCondition, TermFile}

// Term states. A gateway is "up" while it carries traffic (up or degraded),
// as everywhere else in uplinkd; "degraded" asks for degraded exactly.
const (
	StateUp       = "up"
	StateDown     = "down"
	StateDegraded = "degraded"
)

// Term is one fact a condition looks at, written as a short phrase:
//
//	"gateway isp1 up"   "group wan down"   "link eth1 up"
//	"address 198.18.0.100 on eth1"   "condition uplink-ok"
//	"file /run/keepalived/state"   and any of them after "not "
type Term struct {
	Text   string   // as written, for status and errors
	Not    bool     // negated: "not link eth0 up"
	Kind   TermKind // what it looks at
	Name   string   // gateway, group, condition or interface name
	State  string   // gateway, group and link terms: up, down or degraded
	Addr   netip.Addr
	Path   string // file terms
	Family int    // address terms: 4 or 6
}

// UnmarshalText parses one term. References (does the gateway exist?) are
// checked in validation, where the rest of the policy is known.
func (t *Term) UnmarshalText(b []byte) error {
	text := strings.Join(strings.Fields(string(b)), " ")
	f := strings.Fields(text)
	*t = Term{Text: text}
	if len(f) > 0 && f[0] == "not" {
		t.Not, f = true, f[1:]
	}
	if len(f) == 0 {
		return fmt.Errorf("term %q is empty", text)
	}
	t.Kind = TermKind(f[0])
	args := f[1:]
	want := func(n int, form string) error {
		if len(args) != n {
			return fmt.Errorf("term %q is not of the form %q", text, form)
		}
		return nil
	}
	switch t.Kind {
	case TermGateway, TermGroup, TermLink:
		form := string(t.Kind) + " NAME up|down"
		if t.Kind == TermGateway {
			form = "gateway NAME up|degraded|down"
		}
		if err := want(2, form); err != nil {
			return err
		}
		t.Name, t.State = args[0], args[1]
		ok := t.State == StateUp || t.State == StateDown || t.Kind == TermGateway && t.State == StateDegraded
		if !ok {
			states := strings.ReplaceAll(strings.TrimPrefix(form, string(t.Kind)+" NAME "), "|", ", ")
			return fmt.Errorf("term %q: state %q is not one of %s", text, t.State, states)
		}
		if t.Kind == TermLink && !ifaceOK(t.Name) {
			return fmt.Errorf("term %q: %q is not a valid Linux interface name", text, t.Name)
		}
	case TermAddress:
		if err := want(3, "address ADDR on IFACE"); err != nil {
			return err
		}
		if args[1] != "on" {
			return fmt.Errorf("term %q is not of the form %q", text, "address ADDR on IFACE")
		}
		if strings.Contains(args[0], "/") {
			return fmt.Errorf("term %q: write the address without a prefix length", text)
		}
		a, err := netip.ParseAddr(args[0])
		if err != nil {
			return fmt.Errorf("term %q: %q is not an IPv4 or IPv6 address", text, args[0])
		}
		if a.Is4In6() {
			// Linux never shows an IPv4 address this way, so the term
			// could never hold.
			return fmt.Errorf("term %q: %s is an IPv4-mapped IPv6 address, which no interface holds (write %s)", text, a, a.Unmap())
		}
		if a.IsUnspecified() || a.IsMulticast() {
			return fmt.Errorf("term %q: %s is not an address an interface holds", text, a)
		}
		t.Addr, t.Name, t.Family = a.WithZone(""), args[2], FamilyOf(a)
		if !ifaceOK(t.Name) {
			return fmt.Errorf("term %q: %q is not a valid Linux interface name", text, t.Name)
		}
	case TermCondition:
		if err := want(1, "condition NAME"); err != nil {
			return err
		}
		t.Name = args[0]
	case TermFile:
		if err := want(1, "file /PATH"); err != nil {
			return err
		}
		t.Path = args[0]
		if !strings.HasPrefix(t.Path, "/") {
			return fmt.Errorf("term %q: the track file must be an absolute path", text)
		}
	default:
		kinds := make([]string, len(TermKinds))
		for i, k := range TermKinds {
			kinds[i] = string(k)
		}
		return fmt.Errorf("term %q: %q is not one of %s", text, f[0], strings.Join(kinds, ", "))
	}
	return nil
}

func (t Term) String() string { return t.Text }

func ifaceOK(s string) bool {
	return s != "" && len(s) <= 15 && !strings.ContainsAny(s, "/ \t:")
}

// Condition is a compound state over gateways, groups, links, addresses,
// track files and other conditions, as ifstated's states and keepalived's
// sync groups are. It is down until its terms first hold.
type Condition struct {
	Name     string
	Match    Match
	AtLeast  int // MatchAtLeast only
	Terms    []Term
	HoldUp   time.Duration // the terms must hold this long before the condition is up
	HoldDown time.Duration // and fail this long before it is down
}

// Condition returns the named condition or nil.
func (p *Policy) Condition(name string) *Condition {
	for _, c := range p.Conditions {
		if c.Name == name {
			return c
		}
	}
	return nil
}

type fTerm = textField[Term, *Term]

type rawCondition struct {
	All      []fTerm   `toml:"all"`
	Any      []fTerm   `toml:"any"`
	AtLeast  fCount    `toml:"at_least"`
	Of       []fTerm   `toml:"of"`
	HoldUp   fDuration `toml:"hold_up"`
	HoldDown fDuration `toml:"hold_down"`
}

// conditions validates every [condition.NAME]. It runs after gateways and
// groups, whose names it resolves; names is the shared namespace, to which
// it adds the conditions.
func (v *validator) conditions(raw map[string]rawCondition, p *Policy, names map[string]string) {
	for _, name := range sortedKeys(raw) {
		obj := objName("condition", name)
		if kind, dup := names[name]; dup {
			v.addAt(path("condition", name), obj, "name is already used by a %s", kind)
			continue
		}
		names[name] = "condition"
	}
	for _, name := range sortedKeys(raw) {
		if names[name] != "condition" {
			continue
		}
		r := raw[name]
		if c := v.condition(name, &r, p, raw); c != nil {
			p.Conditions = append(p.Conditions, c)
		}
	}
	v.conditionCycles(p)
}

func (v *validator) condition(name string, r *rawCondition, p *Policy, all map[string]rawCondition) *Condition {
	obj := objName("condition", name)
	at := func(keys ...string) []string { return append([]string{"condition", name}, keys...) }
	nerr := len(v.errs)
	if !nameOK(name) {
		v.addAt(at(), obj, "name must be 1..64 letters, digits, '-', '_' or '.'")
	}
	c := &Condition{Name: name}
	var terms []fTerm
	var key string
	set := 0
	if len(r.All) > 0 {
		set++
		c.Match, terms, key = MatchAll, r.All, "all"
	}
	if len(r.Any) > 0 {
		set++
		c.Match, terms, key = MatchAny, r.Any, "any"
	}
	if r.AtLeast.Set || len(r.Of) > 0 {
		set++
		c.Match, terms, key = MatchAtLeast, r.Of, "of"
	}
	switch {
	case set == 0:
		v.addAt(at(), obj, "a condition needs its terms in one of all = [...], any = [...] or at_least = N with of = [...]")
	case set > 1:
		v.addAt(at(), obj, "set only one of all, any or at_least with of (nest a condition to combine them)")
	case c.Match == MatchAtLeast && !r.AtLeast.Set:
		v.addAt(at("of"), obj, "of needs at_least = N")
	case c.Match == MatchAtLeast && len(r.Of) == 0:
		v.addAt(at("at_least"), obj, "at_least needs its terms in of = [...]")
	case c.Match == MatchAtLeast && check(v, r.AtLeast, at("at_least"), obj):
		c.AtLeast = int(r.AtLeast.V)
		if c.AtLeast > len(r.Of) {
			v.addAt(at("at_least"), obj, "at_least %d is more than the %d terms in of", c.AtLeast, len(r.Of))
		}
	}
	for _, f := range terms {
		if !check(v, f, at(key), obj) {
			continue
		}
		t := f.V
		if msg := termRef(t, name, p, all); msg != "" {
			v.addAt(at(key), obj, "%s: term %q: %s", key, t.Text, msg)
			continue
		}
		c.Terms = append(c.Terms, t)
	}
	c.HoldUp = dur(v, r.HoldUp, at("hold_up"), obj, 0)
	c.HoldDown = dur(v, r.HoldDown, at("hold_down"), obj, 0)
	if len(v.errs) > nerr {
		return nil
	}
	return c
}

// termRef checks what a term names, and returns why it cannot hold.
func termRef(t Term, self string, p *Policy, conds map[string]rawCondition) string {
	switch t.Kind {
	case TermGateway:
		if p.Gateway(t.Name) == nil {
			return fmt.Sprintf("gateway %q is not defined", t.Name)
		}
	case TermGroup:
		if p.Group(t.Name) == nil {
			return fmt.Sprintf("group %q is not defined", t.Name)
		}
	case TermCondition:
		if t.Name == self {
			return "a condition cannot depend on itself"
		}
		if _, ok := conds[t.Name]; !ok {
			return fmt.Sprintf("condition %q is not defined", t.Name)
		}
	}
	return ""
}

// conditionCycles refuses conditions that depend on themselves through
// others: such a loop has no value to start from. Each cycle is reported
// once, at its first member by name.
func (v *validator) conditionCycles(p *Policy) {
	deps := map[string][]string{}
	for _, c := range p.Conditions {
		for _, t := range c.Terms {
			if t.Kind == TermCondition {
				deps[c.Name] = append(deps[c.Name], t.Name)
			}
		}
	}
	reported := map[string]bool{}
	for _, c := range p.Conditions {
		if reported[c.Name] {
			continue
		}
		cycle := findCycle(c.Name, deps)
		if cycle == nil {
			continue
		}
		for _, n := range cycle {
			reported[n] = true
		}
		key := "all"
		switch c.Match {
		case MatchAny:
			key = "any"
		case MatchAtLeast:
			key = "of"
		}
		v.addAt(path("condition", c.Name, key), objName("condition", c.Name), "conditions depend on each other in a loop: %s", strings.Join(cycle, " -> "))
	}
	if len(reported) > 0 {
		// Dependents of a loop are refused with it; drop them all so no
		// half-valid set reaches the evaluator (the policy is refused anyway).
		p.Conditions = nil
	}
}

// findCycle returns a path start -> ... -> start, or nil.
func findCycle(start string, deps map[string][]string) []string {
	var walk func(n string, trail []string, seen map[string]bool) []string
	walk = func(n string, trail []string, seen map[string]bool) []string {
		for _, d := range deps[n] {
			if d == start {
				return append(trail, d)
			}
			if seen[d] {
				continue
			}
			seen[d] = true
			if c := walk(d, append(trail, d), seen); c != nil {
				return c
			}
		}
		return nil
	}
	return walk(start, []string{start}, map[string]bool{start: true})
}

// ConditionOrder returns the conditions so that each comes after every condition
// it names: the order an evaluator computes them in. The policy has no
// cycles, or it would have been refused.
func (p *Policy) ConditionOrder() []*Condition {
	done := map[string]bool{}
	var out []*Condition
	var visit func(c *Condition)
	visit = func(c *Condition) {
		if done[c.Name] {
			return
		}
		done[c.Name] = true
		for _, t := range c.Terms {
			if t.Kind == TermCondition {
				if d := p.Condition(t.Name); d != nil {
					visit(d)
				}
			}
		}
		out = append(out, c)
	}
	for _, c := range p.Conditions {
		visit(c)
	}
	return out
}

// groupConditions resolves group.NAME.condition.
func (v *validator) groupConditions(raw *rawFile, p *Policy) {
	for _, g := range p.Groups {
		r := raw.Group[g.Name]
		if !r.Condition.Set {
			continue
		}
		name := string(r.Condition.V)
		if _, ok := raw.Condition[name]; !ok {
			v.addAt(path("group", g.Name, "condition"), objName("group", g.Name), "condition %q is not defined", name)
			continue
		}
		g.Condition = name
	}
}
