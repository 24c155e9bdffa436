package nstest

import (
	"net/netip"
	"testing"
)

// Interface names of the TwoUplinks topology.
const (
	HostUplink1If = "eth1" // Host side of the link to GW1
	HostUplink2If = "eth2" // Host side of the link to GW2
	GWDownlinkIf  = "eth0" // GW side of the link to Host (where faults go)
	GWUplinkIf    = "eth1" // GW side of the link to Server
	ServerGW1If   = "eth1" // Server side of the link to GW1
	ServerGW2If   = "eth2" // Server side of the link to GW2
)

// Address plan of the TwoUplinks topology. Tests should use these instead of
// literals so the plan can change in one place.
var (
	// Uplink 1: Host eth1 <-> GW1 eth0.
	Uplink1Net4 = netip.MustParsePrefix("198.18.1.0/24")
	Uplink1Net6 = netip.MustParsePrefix("2001:db8:1::/64")
	Host1Addr4  = netip.MustParseAddr("198.18.1.2")
	Host1Addr6  = netip.MustParseAddr("2001:db8:1::2")
	GW1Addr4    = netip.MustParseAddr("198.18.1.1")
	GW1Addr6    = netip.MustParseAddr("2001:db8:1::1")

	// Uplink 2: Host eth2 <-> GW2 eth0.
	Uplink2Net4 = netip.MustParsePrefix("198.18.2.0/24")
	Uplink2Net6 = netip.MustParsePrefix("2001:db8:2::/64")
	Host2Addr4  = netip.MustParseAddr("198.18.2.2")
	Host2Addr6  = netip.MustParseAddr("2001:db8:2::2")
	GW2Addr4    = netip.MustParseAddr("198.18.2.1")
	GW2Addr6    = netip.MustParseAddr("2001:db8:2::1")

	// Transit 1: GW1 eth1 <-> Server eth1.
	Transit1Net4        = netip.MustParsePrefix("198.18.11.0/24")
	Transit1Net6        = netip.MustParsePrefix("2001:db8:11::/64")
	GW1TransitAddr4     = netip.MustParseAddr("198.18.11.1")
	GW1TransitAddr6     = netip.MustParseAddr("2001:db8:11::1")
	Server1TransitAddr4 = netip.MustParseAddr("198.18.11.2")
	Server1TransitAddr6 = netip.MustParseAddr("2001:db8:11::2")

	// Transit 2: GW2 eth1 <-> Server eth2.
	Transit2Net4        = netip.MustParsePrefix("198.18.12.0/24")
	Transit2Net6        = netip.MustParsePrefix("2001:db8:12::/64")
	GW2TransitAddr4     = netip.MustParseAddr("198.18.12.1")
	GW2TransitAddr6     = netip.MustParseAddr("2001:db8:12::1")
	Server2TransitAddr4 = netip.MustParseAddr("198.18.12.2")
	Server2TransitAddr6 = netip.MustParseAddr("2001:db8:12::2")

	// Service / probe target on the Server's lo, reachable through either
	// gateway.
	TargetAddr4 = netip.MustParseAddr("198.18.100.1")
	TargetAddr6 = netip.MustParseAddr("2001:db8:100::1")
)

// TwoUplinks is the standard multi-homing lab:
//
//	           eth1 ── eth0 [GW1] eth1 ── eth1
//	[Host]                                    [Server] lo: TargetAddr4/6
//	           eth2 ── eth0 [GW2] eth1 ── eth2
//
// The Server routes each uplink prefix back through the gateway it belongs
// to, so replies to a source address always return via the gateway the
// request used, and a fault on one gateway only affects paths through it.
// The gateways forward and default-route to the Server, so tests may add
// more targets on the Server without touching the gateways. The Host has
// only connected routes: installing defaults is the job of the code under
// test.
type TwoUplinks struct {
	Lab                    *Lab
	Host, GW1, GW2, Server *Host
}

// NewTwoUplinks builds the TwoUplinks topology in a fresh Lab bound to t.
func NewTwoUplinks(t testing.TB) *TwoUplinks {
	t.Helper()
	lab := New(t)
	tu := &TwoUplinks{
		Lab:    lab,
		Host:   lab.Host("host"),
		GW1:    lab.Host("gw1"),
		GW2:    lab.Host("gw2"),
		Server: lab.Host("srv"),
	}
	lab.Link(tu.Host, HostUplink1If, tu.GW1, GWDownlinkIf)
	lab.Link(tu.Host, HostUplink2If, tu.GW2, GWDownlinkIf)
	lab.Link(tu.GW1, GWUplinkIf, tu.Server, ServerGW1If)
	lab.Link(tu.GW2, GWUplinkIf, tu.Server, ServerGW2If)

	addr := func(h *Host, iface string, a netip.Addr, n netip.Prefix) {
		h.AddAddr(t, iface, netip.PrefixFrom(a, n.Bits()).String())
	}
	addr(tu.Host, HostUplink1If, Host1Addr4, Uplink1Net4)
	addr(tu.Host, HostUplink1If, Host1Addr6, Uplink1Net6)
	addr(tu.Host, HostUplink2If, Host2Addr4, Uplink2Net4)
	addr(tu.Host, HostUplink2If, Host2Addr6, Uplink2Net6)

	addr(tu.GW1, GWDownlinkIf, GW1Addr4, Uplink1Net4)
	addr(tu.GW1, GWDownlinkIf, GW1Addr6, Uplink1Net6)
	addr(tu.GW1, GWUplinkIf, GW1TransitAddr4, Transit1Net4)
	addr(tu.GW1, GWUplinkIf, GW1TransitAddr6, Transit1Net6)

	addr(tu.GW2, GWDownlinkIf, GW2Addr4, Uplink2Net4)
	addr(tu.GW2, GWDownlinkIf, GW2Addr6, Uplink2Net6)
	addr(tu.GW2, GWUplinkIf, GW2TransitAddr4, Transit2Net4)
	addr(tu.GW2, GWUplinkIf, GW2TransitAddr6, Transit2Net6)

	addr(tu.Server, ServerGW1If, Server1TransitAddr4, Transit1Net4)
	addr(tu.Server, ServerGW1If, Server1TransitAddr6, Transit1Net6)
	addr(tu.Server, ServerGW2If, Server2TransitAddr4, Transit2Net4)
	addr(tu.Server, ServerGW2If, Server2TransitAddr6, Transit2Net6)
	tu.Server.AddAddr(t, "lo", netip.PrefixFrom(TargetAddr4, 32).String())
	tu.Server.AddAddr(t, "lo", netip.PrefixFrom(TargetAddr6, 128).String())

	for _, gw := range []*Host{tu.GW1, tu.GW2} {
		gw.Sysctl(t, "net.ipv4.ip_forward", "1")
		gw.Sysctl(t, "net.ipv6.conf.all.forwarding", "1")
	}
	tu.GW1.MustRun(t, "ip", "route", "add", "default", "via", Server1TransitAddr4.String(), "dev", GWUplinkIf)
	tu.GW1.MustRun(t, "ip", "-6", "route", "add", "default", "via", Server1TransitAddr6.String(), "dev", GWUplinkIf)
	tu.GW2.MustRun(t, "ip", "route", "add", "default", "via", Server2TransitAddr4.String(), "dev", GWUplinkIf)
	tu.GW2.MustRun(t, "ip", "-6", "route", "add", "default", "via", Server2TransitAddr6.String(), "dev", GWUplinkIf)

	tu.Server.MustRun(t, "ip", "route", "add", Uplink1Net4.String(), "via", GW1TransitAddr4.String(), "dev", ServerGW1If)
	tu.Server.MustRun(t, "ip", "-6", "route", "add", Uplink1Net6.String(), "via", GW1TransitAddr6.String(), "dev", ServerGW1If)
	tu.Server.MustRun(t, "ip", "route", "add", Uplink2Net4.String(), "via", GW2TransitAddr4.String(), "dev", ServerGW2If)
	tu.Server.MustRun(t, "ip", "-6", "route", "add", Uplink2Net6.String(), "via", GW2TransitAddr6.String(), "dev", ServerGW2If)
	return tu
}
