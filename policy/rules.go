package policy

import (
	"net/netip"
	"slices"
	"strings"
)

// rules validates every [rule.NAME], adds the rules gateways imply (probe
// marks and sources), then gives each rule without a priority the next free
// one in uplinkd's band.
func (v *validator) rules(raw *rawFile, p *Policy, tables map[uint32]string) {
	used := map[uint32]string{}
	var auto []*Rule
	for _, name := range sortedKeys(raw.Rule) {
		r := raw.Rule[name]
		rule, ok := v.rule(name, &r, p, tables, used)
		if !ok {
			continue
		}
		if rule.Priority == 0 {
			auto = append(auto, rule)
		}
		p.Rules = append(p.Rules, rule)
	}
	auto = append(auto, gatewayRules(p)...)
	v.assignPriorities(p, auto, used)
}

// rule validates one [rule.NAME]; ok is false if it had any error.
func (v *validator) rule(name string, r *rawRule, p *Policy, tables map[uint32]string, used map[uint32]string) (*Rule, bool) {
	obj := objName("rule", name)
	at := func(keys ...string) []string { return append([]string{"rule", name}, keys...) }
	nerr := len(v.errs)
	rule := &Rule{Name: name}
	if !nameOK(name) {
		v.addAt(at(), obj, "name must be 1..64 letters, digits, '-', '_' or '.'")
	}
	fams := map[int]bool{}
	v.ruleSelectors(r, rule, fams, at, obj, nerr)
	v.ruleLookup(r, rule, fams, p, tables, at, obj)
	v.ruleFamily(r, rule, fams, at, obj)
	v.rulePriority(r, rule, p.Daemon.RulePriority, used, at, obj)
	return rule, len(v.errs) == nerr
}

// ruleSelectors fills from, to, fwmark and iif; a rule must have one, since
// uplinkd will not own a catch-all.
func (v *validator) ruleSelectors(r *rawRule, rule *Rule, fams map[int]bool, at func(...string) []string, obj string, nerr int) {
	if check(v, r.From, at("from"), obj) {
		rule.From = r.From.V.Prefix
		fams[FamilyOf(rule.From.Addr())] = true
	}
	if check(v, r.To, at("to"), obj) {
		rule.To = r.To.V.Prefix
		fams[FamilyOf(rule.To.Addr())] = true
	}
	if check(v, r.FwMark, at("fwmark"), obj) {
		m := r.FwMark.V
		rule.Mark = &m
	}
	if r.IIF.Set {
		rule.IIF = string(r.IIF.V)
	}
	if !rule.From.IsValid() && !rule.To.IsValid() && rule.Mark == nil && rule.IIF == "" && len(v.errs) == nerr {
		v.addAt(at(), obj, "a rule needs at least one of from, to, fwmark or iif (uplinkd will not own a catch-all rule)")
	}
}

// ruleLookup resolves the table a rule looks up, given as a gateway or as a
// table (which may be a gateway's own).
func (v *validator) ruleLookup(r *rawRule, rule *Rule, fams map[int]bool, p *Policy, tables map[uint32]string, at func(...string) []string, obj string) {
	switch {
	case r.Table.Set && r.Gateway.Set:
		v.addAt(at("gateway"), obj, "set either table or gateway, not both")
	case r.Gateway.Set:
		gw := p.Gateway(string(r.Gateway.V))
		if gw == nil {
			v.addAt(at("gateway"), obj, "gateway %q is not defined", r.Gateway.V)
		} else if gw.Table == 0 {
			v.addAt(at("gateway"), obj, "gateway %q has no table of its own", r.Gateway.V)
		} else {
			rule.Table, rule.Gateway = gw.Table, gw.Name
			fams[gw.Family()] = true
		}
	case r.Table.Set:
		if id, ok := v.table(r.Table, at("table"), obj, TableUnspec); ok {
			rule.Table = id
			if owner, ok := tables[id]; ok {
				rule.Gateway = strings.TrimSuffix(strings.TrimPrefix(owner, `gateway "`), `"`)
				if gw := p.Gateway(rule.Gateway); gw != nil {
					fams[gw.Family()] = true
				}
			}
		}
	default:
		v.addAt(at(), obj, "a rule needs a table or a gateway to look up")
	}
}

// ruleFamily settles the rule's family: selectors, table owner and family
// must agree, and IPv4 is the default.
func (v *validator) ruleFamily(r *rawRule, rule *Rule, fams map[int]bool, at func(...string) []string, obj string) {
	switch fam := v.enum(r.Family, at("family"), obj, "", "ipv4", "ipv6"); fam {
	case "ipv4":
		fams[4] = true
		rule.Family = 4
	case "ipv6":
		fams[6] = true
		rule.Family = 6
	}
	if len(fams) > 1 {
		v.addAt(at(), obj, "mixes IPv4 and IPv6 (selectors, table owner and family must agree)")
	}
	for f := range fams {
		rule.Family = f
	}
	if rule.Family == 0 {
		rule.Family = 4
	}
}

// rulePriority checks an explicit priority against the band and the
// priorities already used.
func (v *validator) rulePriority(r *rawRule, rule *Rule, band PriorityBand, used map[uint32]string, at func(...string) []string, obj string) {
	if !check(v, r.Priority, at("priority"), obj) {
		return
	}
	rule.Priority = uint32(r.Priority.V)
	if rule.Priority < band.Min || rule.Priority > band.Max {
		v.addAt(at("priority"), obj, "priority %d is outside uplinkd's band %d-%d", rule.Priority, band.Min, band.Max)
	} else if other, dup := used[rule.Priority]; dup {
		v.addAt(at("priority"), obj, "priority %d is already used by %s", rule.Priority, other)
	} else {
		used[rule.Priority] = obj
	}
}

// gatewayRules adds the rules gateways imply to p.Rules and returns them.
// They come after the explicit ones, in gateway-name order, so a policy gets
// the same priorities every time it is loaded.
func gatewayRules(p *Policy) []*Rule {
	var auto []*Rule
	for _, g := range p.Gateways {
		if g == nil {
			continue
		}
		if g.Probe.Pin == PinMark && g.Probe.Mark != 0 && g.Table != 0 {
			// Probes marked for this gateway look up its own table, which
			// always routes through it: a probe meant for A never leaves via B.
			auto = append(auto, &Rule{
				Name:    "gateway/" + g.Name + "/probe-mark",
				Family:  g.Family(),
				Mark:    &Mark{Value: g.Probe.Mark, Mask: 0xffffffff},
				Table:   g.Table,
				Gateway: g.Name,
			})
		}
		for _, s := range g.Sources {
			auto = append(auto, &Rule{
				Name:    "gateway/" + g.Name + "/" + s.String(),
				Family:  FamilyOf(s),
				From:    netip.PrefixFrom(s, s.BitLen()),
				Table:   g.Table,
				Gateway: g.Name,
			})
		}
	}
	p.Rules = append(p.Rules, auto...)
	return auto
}

// assignPriorities gives each rule in auto the next priority of the band
// that is not used, then sorts p.Rules by priority.
func (v *validator) assignPriorities(p *Policy, auto []*Rule, used map[uint32]string) {
	band := p.Daemon.RulePriority
	next := band.Min
	for _, r := range auto {
		for next <= band.Max && used[next] != "" {
			next++
		}
		if next > band.Max {
			v.addAt(path("daemon", "rule_priorities"), "[daemon]", "rule priority band %d-%d is too small for %d rules", band.Min, band.Max, len(p.Rules))
			return
		}
		r.Priority = next
		used[next] = r.Name
	}
	slices.SortFunc(p.Rules, func(a, b *Rule) int { return int(a.Priority) - int(b.Priority) })
}
