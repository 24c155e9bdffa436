package policy

import (
	"net/netip"
	"slices"
)

// gateway validates one [gateway.NAME] table. Each step below checks one
// concern, in the order its errors have always been reported.
func (v *validator) gateway(name string, r *rawGateway, p *Policy, tables map[uint32]string, sources map[netip.Addr]string) *Gateway {
	obj := objName("gateway", name)
	at := func(keys ...string) []string { return append([]string{"gateway", name}, keys...) }
	if !nameOK(name) {
		v.addAt(at(), obj, "name must be 1..64 letters, digits, '-', '_' or '.'")
	}
	g := &Gateway{Name: name, Weight: 1, Tier: 1, OnDown: TableKeep}
	v.gatewayLink(r, g, at, obj)
	v.gatewayWeights(r, g, at, obj)
	v.gatewaySources(r, g, at, obj, sources)
	v.gatewayTable(r, g, at, obj, tables)
	g.Profile = v.gatewayProfile(r, p, at, obj)
	v.gatewayProbe(&r.Probe, g, at, obj)
	v.gatewayVRF(r, g, at, obj)
	g.Conntrack = v.conntrack(r, g, at, obj)
	g.BFD = v.bfd(&r.BFD, g, at, obj)
	return g
}

// gatewayLink checks address and interface, which must agree on an IPv6
// link-local zone.
func (v *validator) gatewayLink(r *rawGateway, g *Gateway, at func(...string) []string, obj string) {
	if check(v, r.Address, at("address"), obj) {
		g.Address, g.Auto = r.Address.V.Addr.Addr, r.Address.V.Auto
	} else if !r.Address.Set {
		v.addAt(at(), obj, "address is required")
	}
	switch fam := v.enum(r.Family, at("family"), obj, "", "ipv4", "ipv6"); {
	case fam != "" && !g.Auto && r.Address.Set:
		v.addAt(at("family"), obj, "family is only for address = \"auto\": a literal address has its own")
	case g.Auto && fam == "ipv6":
		g.AutoFamily = 6
	case g.Auto:
		g.AutoFamily = 4
	}
	if r.Interface.Set && r.Interface.V != "" {
		g.Interface = string(r.Interface.V)
		if !ifaceNameOK(g.Interface) {
			v.addAt(at("interface"), obj, "interface %q is not a valid Linux interface name", g.Interface)
		}
	} else {
		v.addAt(at(), obj, "interface is required")
	}
	if g.Address.Is6() && g.Address.IsLinkLocalUnicast() && g.Address.Zone() != "" && g.Address.Zone() != g.Interface {
		v.addAt(at("address"), obj, "address zone %q differs from interface %q", g.Address.Zone(), g.Interface)
	}
	g.Address = g.Address.WithZone("")
}

// gatewayWeights fills optional, weight, tier, their degraded variants
// (which default to the healthy ones) and metric.
func (v *validator) gatewayWeights(r *rawGateway, g *Gateway, at func(...string) []string, obj string) {
	if check(v, r.Optional, at("optional"), obj) {
		g.Optional = bool(r.Optional.V)
	}
	if check(v, r.Weight, at("weight"), obj) {
		g.Weight = int(r.Weight.V)
	}
	if check(v, r.Tier, at("tier"), obj) {
		g.Tier = int(r.Tier.V)
	}
	g.DegradedWeight, g.DegradedTier = g.Weight, g.Tier
	if check(v, r.DegradedWeight, at("degraded_weight"), obj) {
		g.DegradedWeight = int(r.DegradedWeight.V)
	}
	if check(v, r.DegradedTier, at("degraded_tier"), obj) {
		g.DegradedTier = int(r.DegradedTier.V)
	}
	if check(v, r.Metric, at("metric"), obj) {
		g.Metric = uint32(r.Metric.V)
	}
}

// gatewaySources checks each source address: its family, and that no other
// gateway (sources) or this one already claims it.
func (v *validator) gatewaySources(r *rawGateway, g *Gateway, at func(...string) []string, obj string, sources map[netip.Addr]string) {
	for i, s := range r.Sources {
		if !check(v, s, at("sources"), obj) {
			continue
		}
		a := s.V.Addr.WithZone("")
		if g.hasFamily() && a.Is4() != (g.Family() == 4) {
			v.addAt(at("sources"), obj, "source %s is not of the gateway's address family", a)
			continue
		}
		if other, dup := sources[a]; dup {
			v.addAt(at("sources"), obj, "source %s is already used by %s", a, other)
			continue
		}
		if slices.Contains(g.Sources, a) {
			v.addAt(at("sources"), obj, "source %s is listed twice (entry %d)", a, i+1)
			continue
		}
		sources[a] = obj
		g.Sources = append(g.Sources, a)
	}
}

// gatewayTable checks the gateway's own table (unique among gateways, never
// a kernel table) and on_down, which only means something with one.
func (v *validator) gatewayTable(r *rawGateway, g *Gateway, at func(...string) []string, obj string, tables map[uint32]string) {
	if r.Table.Set {
		if id, ok := v.table(r.Table, at("table"), obj, TableUnspec, TableDefault, TableMain, TableLocal); ok {
			if other, dup := tables[id]; dup {
				v.addAt(at("table"), obj, "table %d is already the table of %s", id, other)
			} else {
				tables[id] = obj
				g.Table = id
			}
		}
	} else if len(g.Sources) > 0 {
		v.addAt(at("sources"), obj, "sources need a table of the gateway's own (set table)")
	}
	g.OnDown = enumOr(v, r.OnDown, at("on_down"), obj, TableKeep)
	if r.OnDown.Set && g.Table == 0 && !r.Table.Set {
		v.addAt(at("on_down"), obj, "on_down applies to the gateway's own table, but it has none")
	}
}

// gatewayProfile resolves the named profile and applies the gateway's
// [gateway.NAME.detect] overrides on top of it.
func (v *validator) gatewayProfile(r *rawGateway, p *Policy, at func(...string) []string, obj string) *Profile {
	profName := "default"
	if r.Profile.Set {
		profName = string(r.Profile.V)
	}
	base, ok := p.Profiles[profName]
	if !ok {
		v.addAt(at("profile"), obj, "profile %q is not defined", profName)
		base = p.Profiles["default"]
	}
	prof := v.profile(&r.Detect, *base, at("detect"), obj)
	return &prof
}

// gatewayProbe validates [gateway.NAME.probe]: what to probe, how many
// remote targets must answer, and how probes are pinned to the gateway.
func (v *validator) gatewayProbe(pr *rawProbe, g *Gateway, at func(...string) []string, obj string) {
	g.Probe = Probe{Gateway: true, Neigh: true, MinUp: 1, Pin: PinDevice}
	if check(v, pr.Gateway, at("probe", "gateway"), obj) {
		g.Probe.Gateway = bool(pr.Gateway.V)
	}
	if check(v, pr.Neigh, at("probe", "neigh"), obj) {
		g.Probe.Neigh = bool(pr.Neigh.V)
	}
	v.probeICMP(pr, g, at, obj)
	v.probeTCP(pr, g, at, obj)
	v.probeKinds(pr, g, at, obj)
	if check(v, pr.MinUp, at("probe", "min_up"), obj) {
		g.Probe.MinUp = int(pr.MinUp.V)
		if n := g.Probe.Remotes(); g.Probe.MinUp > n {
			v.addAt(at("probe", "min_up"), obj, "min_up %d is more than the %d remote targets", g.Probe.MinUp, n)
		}
	}
	v.probePin(pr, g, at, obj)
}

func (v *validator) probeICMP(pr *rawProbe, g *Gateway, at func(...string) []string, obj string) {
	for _, t := range pr.ICMP {
		if check(v, t, at("probe", "icmp"), obj) {
			if g.hasFamily() && t.V.Is4() != (g.Family() == 4) {
				v.addAt(at("probe", "icmp"), obj, "probe target %s is not of the gateway's address family", t.V.Addr)
				continue
			}
			g.Probe.ICMP = append(g.Probe.ICMP, t.V.Addr.WithZone(""))
		}
	}
}

func (v *validator) probeTCP(pr *rawProbe, g *Gateway, at func(...string) []string, obj string) {
	for _, t := range pr.TCP {
		if !check(v, t, at("probe", "tcp"), obj) {
			continue
		}
		ap, err := netip.ParseAddrPort(string(t.V))
		if err != nil || ap.Port() == 0 {
			v.addAt(at("probe", "tcp"), obj, "tcp probe target %q is not address:port (IPv6 as [2001:db8::1]:80)", t.V)
			continue
		}
		if g.hasFamily() && ap.Addr().Unmap().Is4() != (g.Family() == 4) {
			v.addAt(at("probe", "tcp"), obj, "probe target %s is not of the gateway's address family", ap)
			continue
		}
		g.Probe.TCP = append(g.Probe.TCP, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
}

// probePin checks pin and mark: a mark pin needs a mark, the gateway's own
// table and on_down = "keep"; a source pin needs a source address.
func (v *validator) probePin(pr *rawProbe, g *Gateway, at func(...string) []string, obj string) {
	g.Probe.Pin = enumOr(v, pr.Pin, at("probe", "pin"), obj, PinDevice)
	if check(v, pr.Mark, at("probe", "mark"), obj) {
		g.Probe.Mark = uint32(pr.Mark.V)
	}
	if g.Probe.Pin == PinMark {
		switch {
		case g.Probe.Mark == 0:
			v.addAt(at("probe", "pin"), obj, "pin = \"mark\" needs a non-zero mark")
		case g.Table == 0:
			v.addAt(at("probe", "pin"), obj, "pin = \"mark\" needs the gateway's own table (its probes look it up)")
		case g.OnDown != TableKeep:
			v.addAt(at("probe", "pin"), obj, "pin = \"mark\" needs on_down = \"keep\": a failed-over table would send its probes through another gateway")
		}
	}
	if g.Probe.Pin == PinSource && len(g.Sources) == 0 {
		v.addAt(at("probe", "pin"), obj, "pin = \"source\" needs at least one source address")
	}
}
