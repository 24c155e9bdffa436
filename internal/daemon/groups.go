package daemon

import (
	"slices"
	"strconv"
	"strings"

	"github.com/uplinkd/uplinkd/policy"
	"github.com/uplinkd/uplinkd/routing"
)

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
