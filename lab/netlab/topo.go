package netlab

import (
	"fmt"
	"net/netip"
	"time"
)

// Interface names of the TwoUplinks topology.
const (
	HostUplink1If = "eth1" // Host side of the link to GW1
	HostUplink2If = "eth2" // Host side of the link to GW2
	GWDownlinkIf  = "eth0" // GW side of the link to Host (where first-hop faults go)
	GWUplinkIf    = "eth1" // GW side of the link to Server (where upstream faults go)
	ServerGW1If   = "eth1" // Server side of the link to GW1
	ServerGW2If   = "eth2" // Server side of the link to GW2
)

// Address plan of the TwoUplinks topology. Callers should use these instead
// of literals so the plan can change in one place.
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

	// Service address on the Server's lo, reachable through either
	// gateway: the lab's traffic goes here.
	TargetAddr4 = netip.MustParseAddr("198.18.100.1")
	TargetAddr6 = netip.MustParseAddr("2001:db8:100::1")

	// Remote probe target on the Server's lo, reachable through either
	// gateway: a detector pings it to see a cut behind a gateway.
	ProbeAddr4 = netip.MustParseAddr("198.18.100.2")
	ProbeAddr6 = netip.MustParseAddr("2001:db8:100::2")
)

// TwoUplinks is the standard multi-homing lab:
//
//	           eth1 ── eth0 [GW1] eth1 ── eth1
//	[Host]                                    [Server] lo: Target, Probe
//	           eth2 ── eth0 [GW2] eth1 ── eth2
//
// The Server routes each uplink prefix back through the gateway it belongs
// to, so replies to a source address always return via the gateway the
// request used, and a fault on one gateway only affects paths through it.
// The gateways forward and default-route to the Server, so more targets may
// be added on the Server without touching the gateways. The Host has only
// connected routes: installing defaults is the job of the code under test.
type TwoUplinks struct {
	Lab                    *Lab
	Host, GW1, GW2, Server *Host
}

// NewTwoUplinks builds the TwoUplinks topology in lab, with hosts named
// host, gw1, gw2 and srv.
func NewTwoUplinks(lab *Lab) (*TwoUplinks, error) {
	tu := &TwoUplinks{Lab: lab}
	var err error
	for _, e := range []struct {
		h    **Host
		name string
	}{{&tu.Host, "host"}, {&tu.GW1, "gw1"}, {&tu.GW2, "gw2"}, {&tu.Server, "srv"}} {
		if *e.h, err = lab.Host(e.name); err != nil {
			return nil, err
		}
	}
	for _, l := range []struct {
		a   *Host
		aIf string
		b   *Host
		bIf string
	}{
		{tu.Host, HostUplink1If, tu.GW1, GWDownlinkIf},
		{tu.Host, HostUplink2If, tu.GW2, GWDownlinkIf},
		{tu.GW1, GWUplinkIf, tu.Server, ServerGW1If},
		{tu.GW2, GWUplinkIf, tu.Server, ServerGW2If},
	} {
		if err := lab.Link(l.a, l.aIf, l.b, l.bIf); err != nil {
			return nil, err
		}
	}
	type addr struct {
		h     *Host
		iface string
		a     netip.Addr
		n     netip.Prefix
	}
	for _, a := range []addr{
		{tu.Host, HostUplink1If, Host1Addr4, Uplink1Net4},
		{tu.Host, HostUplink1If, Host1Addr6, Uplink1Net6},
		{tu.Host, HostUplink2If, Host2Addr4, Uplink2Net4},
		{tu.Host, HostUplink2If, Host2Addr6, Uplink2Net6},
		{tu.GW1, GWDownlinkIf, GW1Addr4, Uplink1Net4},
		{tu.GW1, GWDownlinkIf, GW1Addr6, Uplink1Net6},
		{tu.GW1, GWUplinkIf, GW1TransitAddr4, Transit1Net4},
		{tu.GW1, GWUplinkIf, GW1TransitAddr6, Transit1Net6},
		{tu.GW2, GWDownlinkIf, GW2Addr4, Uplink2Net4},
		{tu.GW2, GWDownlinkIf, GW2Addr6, Uplink2Net6},
		{tu.GW2, GWUplinkIf, GW2TransitAddr4, Transit2Net4},
		{tu.GW2, GWUplinkIf, GW2TransitAddr6, Transit2Net6},
		{tu.Server, ServerGW1If, Server1TransitAddr4, Transit1Net4},
		{tu.Server, ServerGW1If, Server1TransitAddr6, Transit1Net6},
		{tu.Server, ServerGW2If, Server2TransitAddr4, Transit2Net4},
		{tu.Server, ServerGW2If, Server2TransitAddr6, Transit2Net6},
		{tu.Server, "lo", TargetAddr4, netip.PrefixFrom(TargetAddr4, 32)},
		{tu.Server, "lo", TargetAddr6, netip.PrefixFrom(TargetAddr6, 128)},
		{tu.Server, "lo", ProbeAddr4, netip.PrefixFrom(ProbeAddr4, 32)},
		{tu.Server, "lo", ProbeAddr6, netip.PrefixFrom(ProbeAddr6, 128)},
	} {
		if err := a.h.AddAddr(a.iface, netip.PrefixFrom(a.a, a.n.Bits()).String()); err != nil {
			return nil, err
		}
	}
	for _, gw := range []*Host{tu.GW1, tu.GW2} {
		for _, k := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
			if err := gw.Sysctl(k, "1"); err != nil {
				return nil, err
			}
		}
	}
	for _, r := range []struct {
		h    *Host
		args []string
	}{
		{tu.GW1, []string{"ip", "route", "add", "default", "via", Server1TransitAddr4.String(), "dev", GWUplinkIf}},
		{tu.GW1, []string{"ip", "-6", "route", "add", "default", "via", Server1TransitAddr6.String(), "dev", GWUplinkIf}},
		{tu.GW2, []string{"ip", "route", "add", "default", "via", Server2TransitAddr4.String(), "dev", GWUplinkIf}},
		{tu.GW2, []string{"ip", "-6", "route", "add", "default", "via", Server2TransitAddr6.String(), "dev", GWUplinkIf}},
		{tu.Server, []string{"ip", "route", "add", Uplink1Net4.String(), "via", GW1TransitAddr4.String(), "dev", ServerGW1If}},
		{tu.Server, []string{"ip", "-6", "route", "add", Uplink1Net6.String(), "via", GW1TransitAddr6.String(), "dev", ServerGW1If}},
		{tu.Server, []string{"ip", "route", "add", Uplink2Net4.String(), "via", GW2TransitAddr4.String(), "dev", ServerGW2If}},
		{tu.Server, []string{"ip", "-6", "route", "add", Uplink2Net6.String(), "via", GW2TransitAddr6.String(), "dev", ServerGW2If}},
	} {
		if _, err := r.h.MustRun(r.args...); err != nil {
			return nil, err
		}
	}
	return tu, nil
}

// Gateway returns GW1 for n == 1 and GW2 for n == 2.
func (tu *TwoUplinks) Gateway(n int) *Host {
	if n == 1 {
		return tu.GW1
	}
	return tu.GW2
}

// Fault is a failure the lab can inflict on a gateway.
type Fault string

// The lab's faults. Each one is applied inside the gateway's namespace;
// none of them touches the Host, so what the Host sees is exactly what a
// real host would see of a real gateway failing.
const (
	FaultBlackhole    Fault = "blackhole"     // IP dropped silently; carrier up, ARP/ND still answered
	FaultBlackholeARP Fault = "blackhole-arp" // everything dropped, ARP/ND too
	FaultLinkDown     Fault = "linkdown"      // carrier lost on the Host's side
	FaultUpstream     Fault = "upstream"      // gateway alive, its path to the Server cut
	FaultFlap         Fault = "flap"          // link down/up every FlapPeriod for FlapFor, then up
	FaultLoss         Fault = "loss"          // LossPercent random loss of IP arriving from the Host
	FaultRecover      Fault = "recover"       // every fault undone
)

// Faults lists the failures (Recover excluded) in the order the bench runs
// them.
var Faults = []Fault{FaultBlackhole, FaultBlackholeARP, FaultLinkDown, FaultUpstream, FaultFlap, FaultLoss}

// ParseFault accepts a fault's name.
func ParseFault(s string) (Fault, error) {
	for _, f := range append(Faults, FaultRecover) {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown fault %q (want one of blackhole, blackhole-arp, linkdown, upstream, flap, loss, recover)", s)
}

// FaultOptions tunes the faults that have parameters. Zero values take the
// defaults: 30 % loss, a 1 s flap period for 6 s.
type FaultOptions struct {
	LossPercent int
	FlapPeriod  time.Duration
	FlapFor     time.Duration
}

func (o FaultOptions) withDefaults() FaultOptions {
	if o.LossPercent == 0 {
		o.LossPercent = 30
	}
	if o.FlapPeriod == 0 {
		o.FlapPeriod = time.Second
	}
	if o.FlapFor == 0 {
		o.FlapFor = 6 * time.Second
	}
	return o
}

// Inject applies fault f to gateway n (1 or 2).
func (tu *TwoUplinks) Inject(n int, f Fault, o FaultOptions) error {
	if n != 1 && n != 2 {
		return fmt.Errorf("injecting %s: no gateway %d", f, n)
	}
	o = o.withDefaults()
	gw := tu.Gateway(n)
	var err error
	switch f {
	case FaultBlackhole:
		err = gw.BlackholeIP(GWDownlinkIf)
	case FaultBlackholeARP:
		err = gw.BlackholeARP(GWDownlinkIf)
	case FaultLinkDown:
		err = gw.LinkDown(GWDownlinkIf)
	case FaultUpstream:
		// Dropping what comes back from the Server leaves the gateway
		// answering on its Host side (pings to it, ARP) while nothing it
		// forwards ever gets an answer: a dead ISP behind a live CPE.
		err = gw.BlackholeIP(GWUplinkIf)
	case FaultFlap:
		err = gw.Flap(GWDownlinkIf, o.FlapPeriod, o.FlapFor)
	case FaultLoss:
		err = gw.Loss(GWDownlinkIf, o.LossPercent)
	case FaultRecover:
		err = gw.Recover()
	default:
		err = fmt.Errorf("unknown fault %q", f)
	}
	if err != nil {
		return fmt.Errorf("injecting %s on gw%d: %w", f, n, err)
	}
	return nil
}
