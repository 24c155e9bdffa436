package nstest

import (
	"context"
	"testing"

	"github.com/uplinkd/uplinkd/lab/netlab"
	"github.com/vishvananda/netlink"
)

// Interface names of the TwoUplinks topology (see netlab).
const (
	HostUplink1If = netlab.HostUplink1If // Host side of the link to GW1
	HostUplink2If = netlab.HostUplink2If // Host side of the link to GW2
	GWDownlinkIf  = netlab.GWDownlinkIf  // GW side of the link to Host (where faults go)
	GWUplinkIf    = netlab.GWUplinkIf    // GW side of the link to Server
	ServerGW1If   = netlab.ServerGW1If   // Server side of the link to GW1
	ServerGW2If   = netlab.ServerGW2If   // Server side of the link to GW2
)

// Address plan of the TwoUplinks topology, defined once in netlab. Tests
// should use these instead of literals so the plan can change in one place.
var (
	Uplink1Net4 = netlab.Uplink1Net4
	Uplink1Net6 = netlab.Uplink1Net6
	Host1Addr4  = netlab.Host1Addr4
	Host1Addr6  = netlab.Host1Addr6
	GW1Addr4    = netlab.GW1Addr4
	GW1Addr6    = netlab.GW1Addr6

	Uplink2Net4 = netlab.Uplink2Net4
	Uplink2Net6 = netlab.Uplink2Net6
	Host2Addr4  = netlab.Host2Addr4
	Host2Addr6  = netlab.Host2Addr6
	GW2Addr4    = netlab.GW2Addr4
	GW2Addr6    = netlab.GW2Addr6

	Transit1Net4        = netlab.Transit1Net4
	Transit1Net6        = netlab.Transit1Net6
	GW1TransitAddr4     = netlab.GW1TransitAddr4
	GW1TransitAddr6     = netlab.GW1TransitAddr6
	Server1TransitAddr4 = netlab.Server1TransitAddr4
	Server1TransitAddr6 = netlab.Server1TransitAddr6

	Transit2Net4        = netlab.Transit2Net4
	Transit2Net6        = netlab.Transit2Net6
	GW2TransitAddr4     = netlab.GW2TransitAddr4
	GW2TransitAddr6     = netlab.GW2TransitAddr6
	Server2TransitAddr4 = netlab.Server2TransitAddr4
	Server2TransitAddr6 = netlab.Server2TransitAddr6

	// Service / probe targets on the Server's lo, reachable through either
	// gateway.
	TargetAddr4 = netlab.TargetAddr4
	TargetAddr6 = netlab.TargetAddr6
	ProbeAddr4  = netlab.ProbeAddr4
	ProbeAddr6  = netlab.ProbeAddr6
)

// TwoUplinks is the standard multi-homing lab (netlab.TwoUplinks):
//
//	           eth1 ── eth0 [GW1] eth1 ── eth1
//	[Host]                                    [Server] lo: TargetAddr4/6, ProbeAddr4/6
//	           eth2 ── eth0 [GW2] eth1 ── eth2
//
// The Server routes each uplink prefix back through the gateway it belongs
// to, so replies to a source address always return via the gateway the
// request used, and a fault on one gateway only affects paths through it.
// The gateways forward and default-route to the Server. The Host has only
// connected routes: installing defaults is the job of the code under test.
type TwoUplinks struct {
	Lab                    *Lab
	Host, GW1, GW2, Server *Host
}

// NewTwoUplinks builds the TwoUplinks topology in a fresh Lab bound to t.
func NewTwoUplinks(t testing.TB) *TwoUplinks {
	t.Helper()
	lab := New(t)
	tu, err := netlab.NewTwoUplinks(lab.Lab)
	if err != nil {
		t.Fatalf("nstest: building TwoUplinks: %v", err)
	}
	return &TwoUplinks{
		Lab:    lab,
		Host:   lab.wrap(tu.Host),
		GW1:    lab.wrap(tu.GW1),
		GW2:    lab.wrap(tu.GW2),
		Server: lab.wrap(tu.Server),
	}
}

// SharedLAN is netlab.SharedLAN (the LVS §37.1 realserver: one host NIC on
// a bridge with n gateways) with nstest hosts.
type SharedLAN struct {
	*netlab.SharedLAN
	Lab                   *Lab
	Host, LANHost, Server *Host
	Gateways              []*Host
}

// NewSharedLAN builds the SharedLAN topology with n gateways in a fresh Lab
// bound to t.
func NewSharedLAN(t testing.TB, n int) *SharedLAN {
	t.Helper()
	lab := New(t)
	s, err := netlab.NewSharedLAN(lab.Lab, n)
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	out := &SharedLAN{SharedLAN: s, Lab: lab, Host: lab.wrap(s.Host), LANHost: lab.wrap(s.LAN), Server: lab.wrap(s.Server)}
	for _, g := range s.Gateways {
		out.Gateways = append(out.Gateways, lab.wrap(g))
	}
	return out
}

// NATLab is netlab.NATLab bound to a test: a NAT router with four uplinks,
// each to its own ISP, and a LAN client behind it.
type NATLab struct {
	Lab    *Lab
	Mode   netlab.NATMode
	Client *Host
	Router *Host
	ISPs   [netlab.NATUplinks]*Host
	Server *Host

	raw *netlab.NATLab
}

// NewNATLab builds the NAT lab with the given NAT mode in a fresh Lab
// bound to t.
func NewNATLab(t testing.TB, mode netlab.NATMode) *NATLab {
	t.Helper()
	lab := New(t)
	n, err := netlab.NewNATLab(lab.Lab, mode)
	if err != nil {
		t.Fatalf("nstest: building the NAT lab: %v", err)
	}
	out := &NATLab{Lab: lab, Mode: mode, Client: lab.wrap(n.Client), Router: lab.wrap(n.Router), Server: lab.wrap(n.Server), raw: n}
	for i, isp := range n.ISPs {
		out.ISPs[i] = lab.wrap(isp)
	}
	return out
}

// ISP returns the ISP host of uplink u (1..netlab.NATUplinks).
func (n *NATLab) ISP(u int) *Host { return n.ISPs[u-1] }

// StartEcho runs the echo responder in the Server namespace until the test
// ends.
func (n *NATLab) StartEcho(t testing.TB) {
	t.Helper()
	stop, err := n.raw.StartEcho()
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("nstest: echo responder: %v", err)
		}
	})
}

// Conntrack lists the router's IPv4 conntrack entries.
func (n *NATLab) Conntrack(t testing.TB) []*netlink.ConntrackFlow {
	t.Helper()
	flows, err := n.raw.Conntrack()
	if err != nil {
		t.Fatalf("nstest: %v", err)
	}
	return flows
}

// RunFailover runs a silent failure and return of uplink 1 under traffic
// (netlab.NATLab.RunFailover).
func (n *NATLab) RunFailover(ctx context.Context, cfg netlab.FailoverConfig) (*netlab.FailoverResult, error) {
	return n.raw.RunFailover(ctx, cfg)
}

// ClassicDefault makes the router's default a classic multipath route over
// the uplinks ups.
func (n *NATLab) ClassicDefault(t testing.TB, ups ...int) {
	t.Helper()
	if err := n.raw.ClassicDefault(ups...); err != nil {
		t.Fatalf("nstest: %v", err)
	}
}

// Raw is the netlab.NATLab underneath, for helpers that return errors
// instead of failing the test (from inside a running scenario).
func (n *NATLab) Raw() *netlab.NATLab { return n.raw }
