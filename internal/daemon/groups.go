package daemon

import (
	"slices"
	"strconv"
	"strings"

	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
)

// standbySet is the gateways that carry no traffic by policy: in every
// group they belong to, a better tier has a healthy member. Down gateways
// are not standby: the detector probes those for recovery anyway.
func standbySet(p *policy.Policy, h routing.Snapshot) map[string]bool {
	inGroup := map[string]int{}
	standbyIn := map[string]int{}
	for _, grp := range p.Groups {
		best := -1
		tier := map[string]int{}
		for _, name := range grp.Gateways {
			g := p.Gateway(name)
			if g == nil {
				continue
			}
			t := g.Tier
			if h[name] == routing.Degraded {
				t = g.DegradedTier
			}
			tier[name] = t
			if h[name].Healthy() && (best < 0 || t < best) {
				best = t
			}
		}
		for _, name := range grp.Gateways {
			if _, ok := tier[name]; !ok {
				continue
			}
			inGroup[name]++
			if best >= 0 && h[name].Healthy() && tier[name] > best {
				standbyIn[name]++
			}
		}
	}
	out := map[string]bool{}
	for name, n := range inGroup {
		if standbyIn[name] == n {
			out[name] = true
		}
	}
	return out
}

func groupHealthy(p *policy.Policy, grp *policy.Group, h routing.Snapshot) int {
	n := 0
	for _, name := range grp.Gateways {
		if p.Gateway(name) != nil && h[name].Healthy() {
			n++
		}
	}
	return n
}

func groupsOf(p *policy.Policy, gw string) []string {
	var out []string
	for _, grp := range p.Groups {
		if slices.Contains(grp.Gateways, gw) {
			out = append(out, grp.Name)
		}
	}
	return out
}

func tableText(t uint32) string {
	if t == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(t), 10)
}

// gatewayTables is where a gateway's routes live: its own table and its
// groups' tables.
func gatewayTables(p *policy.Policy, g *policy.Gateway) string {
	var ts []string
	if g.Table != 0 {
		ts = append(ts, tableText(g.Table))
	}
	for _, grp := range p.Groups {
		if slices.Contains(grp.Gateways, g.Name) && !slices.Contains(ts, tableText(grp.Table)) {
			ts = append(ts, tableText(grp.Table))
		}
	}
	return strings.Join(ts, ",")
}
