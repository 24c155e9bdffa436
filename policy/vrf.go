package policy

import "strings"

// A gateway may live in a VRF (vrf = "blue"): its interface is enslaved to
// that VRF device, and the kernel's l3mdev rule sends the VRF's traffic to
// the VRF's own table. uplinkd then writes the gateway's groups in that
// table, which it reads from the kernel (the table is the VRF device's,
// set when the operator created it), and probes through sockets bound to
// the gateway's interface, which the kernel resolves in the VRF's table
// (sockets bound to an enslaved device, Linux 4.14+). Binding them to the
// VRF device instead would let the VRF's multipath default pick another
// uplink for a remote target.

// gatewayVRF checks vrf and what it rules out: a gateway table and
// sources (their rules would look up a table outside the VRF, before the
// l3mdev rule). That leaves pin = "device" as the only pin: "source"
// needs sources and "mark" a table.
func (v *validator) gatewayVRF(r *rawGateway, g *Gateway, at func(...string) []string, obj string) {
	if !check(v, r.VRF, at("vrf"), obj) {
		return
	}
	name := string(r.VRF.V)
	switch {
	case !ifaceNameOK(name):
		v.addAt(at("vrf"), obj, "vrf %q is not a valid Linux interface name", name)
		return
	case name == g.Interface:
		v.addAt(at("vrf"), obj, "vrf %q is the gateway's own interface; name the VRF device its interface is enslaved to", name)
		return
	}
	g.VRF = name
	if r.Table.Set || len(r.Sources) > 0 {
		v.addAt(at("vrf"), obj, "table and sources are for the default VRF: in vrf %q the VRF's own table routes its traffic; remove them or vrf", name)
	}
}

// groupVRF gives the group its gateways' VRF, which they must share: a
// default route lives in one table. A group in a VRF routes in the VRF's
// table, so it may not name one.
func (v *validator) groupVRF(r *rawGroup, g *Group, p *Policy, at func(...string) []string, obj string) {
	first := ""
	for i, gn := range g.Gateways {
		gw := p.Gateway(gn)
		if gw == nil {
			continue
		}
		if i == 0 {
			g.VRF, first = gw.VRF, gn
			continue
		}
		if gw.VRF != g.VRF {
			v.addAt(at("gateways"), obj, "gateway %q is in %s but gateway %q is in %s; a group's default lives in one table", gn, vrfText(gw.VRF), first, vrfText(g.VRF))
		}
	}
	if g.VRF == "" {
		return
	}
	g.Table = 0 // the VRF's, read by the daemon
	if r.Table.Set {
		v.addAt(at("table"), obj, "table is vrf %q's own, read from the kernel; remove table", g.VRF)
	}
}

// ifaceNameOK says whether name can be a Linux interface's (IFNAMSIZ
// less the NUL; no '/' or white space): a gateway's interface, a VRF.
func ifaceNameOK(name string) bool {
	return name != "" && len(name) <= 15 && !strings.ContainsAny(name, "/ \t")
}

func vrfText(vrf string) string {
	if vrf == "" {
		return "the default VRF"
	}
	return "vrf " + `"` + vrf + `"`
}
