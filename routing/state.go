package routing

// This file holds the canonical form of a State (Normalize and the orders
// it sorts by) and its `ip`-style text (RouteString, RuleString, Format):
// what makes two states compare equal and what they look like.

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/uplinkd/uplinkd/policy"
)

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
	if r.NHID != 0 {
		fmt.Fprintf(&b, " nhid %d", r.NHID)
	}
	if len(r.Nexthops) == 1 && r.NHID == 0 {
		writeNexthop(&b, r.Nexthops[0], false)
	}
	fmt.Fprintf(&b, " table %s proto %d", policy.TableName(r.Table), r.Protocol)
	if r.Src.IsValid() {
		fmt.Fprintf(&b, " src %s", r.Src)
	}
	if r.Metric != 0 {
		fmt.Fprintf(&b, " metric %d", r.Metric)
	}
	if r.Tos != 0 {
		fmt.Fprintf(&b, " tos 0x%x", r.Tos)
	}
	if len(r.Nexthops) > 1 || (r.NHID != 0 && len(r.Nexthops) > 0) {
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
	fmt.Fprintf(&b, " lookup %s proto %d", policy.TableName(r.Table), r.Protocol)
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
