package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/uplinkd/uplinkd/policy"
)

// A gateway in a VRF (vrf = "blue") routes in the VRF's table, which is
// the VRF device's: the operator chose it when creating the device (ip
// link add blue type vrf table 10), and may create it again with another.
// The learner reads the VRF devices the policy names; resolve writes each
// VRF's table into its groups and holds its gateways down while the VRF is
// absent or their interface is not in it, since the kernel would then
// route their traffic by another table.

// VRF is one VRF device as the learner sees it.
type VRF struct {
	Table   uint32
	Members []string // interfaces enslaved to it, sorted
}

func (v VRF) equal(o VRF) bool { return v.Table == o.Table && slices.Equal(v.Members, o.Members) }

// VRFDevices is the learner's kernel boundary for VRFs.
type VRFDevices interface {
	// VRFs lists the VRF devices of the namespace by name.
	VRFs() (map[string]VRF, error)
	// L3mdev says which families (4, 6) have an l3mdev rule.
	L3mdev() (map[int]bool, error)
	// WatchLinks calls hint on every link change until ctx ends or the
	// subscription fails (ENOBUFS included), and says why.
	WatchLinks(ctx context.Context, hint func()) error
}

// hasVRF says whether p has a gateway in a VRF.
func hasVRF(p *policy.Policy) bool {
	return slices.ContainsFunc(p.Gateways, func(g *policy.Gateway) bool { return g.VRF != "" })
}

// namedVRFs keeps the VRFs p names.
func namedVRFs(p *policy.Policy, all map[string]VRF) map[string]VRF {
	out := map[string]VRF{}
	for _, g := range p.Gateways {
		if v, ok := all[g.VRF]; ok && g.VRF != "" {
			out[g.VRF] = v
		}
	}
	return out
}

// vrfProblem is why g cannot route in its VRF now: the VRF is absent, or
// g's interface is not enslaved to it. "" when it can, or g has no VRF.
func vrfProblem(g *policy.Gateway, vrfs map[string]VRF) string {
	if g.VRF == "" {
		return ""
	}
	v, ok := vrfs[g.VRF]
	switch {
	case !ok:
		return "vrf " + g.VRF + " absent"
	case !slices.Contains(v.Members, g.Interface):
		return g.Interface + " is not in vrf " + g.VRF
	}
	return ""
}

// vrfWarning is what routes wrongly for g though g itself is fine: its
// VRF is there with its interface in it, but no rule of its family sends
// the VRF's traffic to the VRF's table (the l3mdev rule the kernel adds
// with its first VRF, which may have been deleted or never re-added).
func vrfWarning(g *policy.Gateway, f Facts) string {
	v, ok := f.VRFs[g.VRF]
	if g.VRF == "" || !ok || vrfProblem(g, f.VRFs) != "" || f.L3mdev[g.Family()] {
		return ""
	}
	return fmt.Sprintf("no IPv%d l3mdev rule: traffic in vrf %s never reaches its table %d (ip rule add l3mdev pref 1000)", g.Family(), g.VRF, v.Table)
}

// logL3mdev warns of each VRF gateway's new warning, once.
func logL3mdev(log *slog.Logger, p *policy.Policy, prev, now Facts, known bool) {
	for _, g := range p.Gateways {
		was, is := vrfWarning(g, prev), vrfWarning(g, now)
		if is != "" && (is != was || !known) {
			log.Warn("vrf routes by the wrong table", "gateway", g.Name, "iface", g.Interface, "vrf", g.VRF, "err", is)
		}
	}
}

// resolveVRFs gives every group in a VRF the VRF's table, 0 (unresolved)
// while the VRF is absent. groups are not changed.
func resolveVRFs(groups []*policy.Group, vrfs map[string]VRF) []*policy.Group {
	if !slices.ContainsFunc(groups, func(g *policy.Group) bool { return g.VRF != "" }) {
		return groups
	}
	out := make([]*policy.Group, len(groups))
	for i, g := range groups {
		out[i] = g
		if g.VRF == "" {
			continue
		}
		c := *g
		c.Table = vrfs[g.VRF].Table
		out[i] = &c
	}
	return out
}

// logVRFs says what changed for each VRF p names.
func logVRFs(log *slog.Logger, p *policy.Policy, prev, now map[string]VRF, known bool) {
	var names []string
	for _, g := range p.Gateways {
		if g.VRF != "" && !slices.Contains(names, g.VRF) {
			names = append(names, g.VRF)
		}
	}
	for _, n := range names {
		was, had := prev[n]
		got, has := now[n]
		switch {
		case has && (!had || !was.equal(got)):
			log.Info("vrf read", "vrf", n, "table", got.Table, "members", got.Members)
		case !has && (had || !known):
			log.Info("vrf absent: its groups write nothing, its gateways are down", "vrf", n)
		}
	}
}

// vrfNote is what `uplinkd plan` says of a VRF gateway.
func vrfNote(g *policy.Gateway, f Facts) string {
	if r := vrfProblem(g, f.VRFs); r != "" {
		return fmt.Sprintf("gateway %s: %s (down, its groups write nothing there)", g.Name, r)
	}
	n := fmt.Sprintf("gateway %s: in vrf %s, table %d", g.Name, g.VRF, f.VRFs[g.VRF].Table)
	if w := vrfWarning(g, f); w != "" {
		n += "; warning: " + w
	}
	return n
}
