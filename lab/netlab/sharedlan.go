package netlab

import (
	"fmt"
	"net/netip"
)

// SharedLAN is the LVS HOWTO §37.1 realserver's wiring: one host NIC on a
// bridge shared by n gateways (directors), each forwarding to a Server
// behind it over a transit link of its own.
//
//	[Host] eth0 ── br0 [LAN] ── eth0 [GW1] eth1 ── eth1 [Server] lo: Target, Probe
//	                        └── eth0 [GW2] eth1 ── eth2
//
// The Host holds one source address per gateway on lo (Source4/6(i),
// announced by nothing: the gateways route SourceNet4/6 to the Host), as a
// realserver holds one VIP per director. The Server routes Source(i) back
// through gateway i and the LAN through GW1. The Host has only connected
// routes: tables and rules are the job of the code under test.
type SharedLAN struct {
	Lab         *Lab
	Host, LAN   *Host
	Server      *Host
	Gateways    []*Host
	HostIf      string // "eth0"
	GatewayIf   string // "eth0", the gateways' LAN side (where first-hop faults go)
	GatewayUpIf string // "eth1", the gateways' transit side (upstream faults)
	LANNet4     netip.Prefix
	LANNet6     netip.Prefix
	HostAddr4   netip.Addr
	HostAddr6   netip.Addr
	SourceNet4  netip.Prefix
	SourceNet6  netip.Prefix
	BridgeName  string
}

// GatewayAddr4 and GatewayAddr6 are gateway i's (0-based) LAN addresses.
func (s *SharedLAN) GatewayAddr4(i int) netip.Addr { return nthAddr(s.LANNet4, i+1) }
func (s *SharedLAN) GatewayAddr6(i int) netip.Addr { return nthAddr(s.LANNet6, i+1) }

// Source4 and Source6 are the Host's source address for gateway i.
func (s *SharedLAN) Source4(i int) netip.Addr { return nthAddr(s.SourceNet4, i+1) }
func (s *SharedLAN) Source6(i int) netip.Addr { return nthAddr(s.SourceNet6, i+1) }

func nthAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Addr()
	for ; n > 0; n-- {
		a = a.Next()
	}
	return a
}

func transitNet4(i int) netip.Prefix {
	return netip.MustParsePrefix(fmt.Sprintf("198.18.%d.0/24", 21+i))
}
func transitNet6(i int) netip.Prefix {
	return netip.MustParsePrefix(fmt.Sprintf("2001:db8:%d::/64", 21+i))
}

// NewSharedLAN builds the SharedLAN topology in lab with n gateways, with
// hosts named host, lan, gw1..gwN and srv.
func NewSharedLAN(lab *Lab, n int) (*SharedLAN, error) {
	if n < 1 || n > 9 {
		return nil, fmt.Errorf("shared LAN with %d gateways: want 1 to 9", n)
	}
	s := &SharedLAN{Lab: lab, HostIf: "eth0", GatewayIf: "eth0", GatewayUpIf: "eth1", BridgeName: "br0",
		LANNet4: netip.MustParsePrefix("198.18.1.0/24"), LANNet6: netip.MustParsePrefix("2001:db8:1::/64"),
		SourceNet4: netip.MustParsePrefix("198.18.50.0/24"), SourceNet6: netip.MustParsePrefix("2001:db8:50::/64")}
	s.HostAddr4, s.HostAddr6 = nthAddr(s.LANNet4, 100), nthAddr(s.LANNet6, 0x100)
	var err error
	for _, e := range []struct {
		h    **Host
		name string
	}{{&s.Host, "host"}, {&s.LAN, "lan"}, {&s.Server, "srv"}} {
		if *e.h, err = lab.Host(e.name); err != nil {
			return nil, err
		}
	}
	run := func(h *Host, args ...string) {
		if err == nil {
			_, err = h.MustRun(args...)
		}
	}
	addr := func(h *Host, iface string, a netip.Addr, bits int) {
		if err == nil {
			err = h.AddAddr(iface, netip.PrefixFrom(a, bits).String())
		}
	}
	run(s.LAN, "ip", "link", "add", s.BridgeName, "type", "bridge")
	run(s.LAN, "ip", "link", "set", s.BridgeName, "up")
	if err == nil {
		err = lab.Link(s.Host, s.HostIf, s.LAN, "p0")
	}
	run(s.LAN, "ip", "link", "set", "p0", "master", s.BridgeName)
	addr(s.Host, s.HostIf, s.HostAddr4, 24)
	addr(s.Host, s.HostIf, s.HostAddr6, 64)
	for _, t := range []netip.Addr{TargetAddr4, ProbeAddr4} {
		addr(s.Server, "lo", t, 32)
	}
	for _, t := range []netip.Addr{TargetAddr6, ProbeAddr6} {
		addr(s.Server, "lo", t, 128)
	}
	for i := 0; i < n && err == nil; i++ {
		var gw *Host
		if gw, err = lab.Host(fmt.Sprintf("gw%d", i+1)); err != nil {
			break
		}
		s.Gateways = append(s.Gateways, gw)
		port, srvIf := fmt.Sprintf("p%d", i+1), fmt.Sprintf("eth%d", i+1)
		if err = lab.Link(gw, s.GatewayIf, s.LAN, port); err == nil {
			err = lab.Link(gw, s.GatewayUpIf, s.Server, srvIf)
		}
		run(s.LAN, "ip", "link", "set", port, "master", s.BridgeName)
		t4, t6 := transitNet4(i), transitNet6(i)
		addr(gw, s.GatewayIf, s.GatewayAddr4(i), 24)
		addr(gw, s.GatewayIf, s.GatewayAddr6(i), 64)
		addr(gw, s.GatewayUpIf, nthAddr(t4, 1), 24)
		addr(gw, s.GatewayUpIf, nthAddr(t6, 1), 64)
		addr(s.Server, srvIf, nthAddr(t4, 2), 24)
		addr(s.Server, srvIf, nthAddr(t6, 2), 64)
		addr(s.Host, "lo", s.Source4(i), 32)
		addr(s.Host, "lo", s.Source6(i), 128)
		for _, k := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
			if err == nil {
				err = gw.Sysctl(k, "1")
			}
		}
		run(gw, "ip", "route", "add", "default", "via", nthAddr(t4, 2).String(), "dev", s.GatewayUpIf)
		run(gw, "ip", "-6", "route", "add", "default", "via", nthAddr(t6, 2).String(), "dev", s.GatewayUpIf)
		run(gw, "ip", "route", "add", s.SourceNet4.String(), "via", s.HostAddr4.String(), "dev", s.GatewayIf)
		run(gw, "ip", "-6", "route", "add", s.SourceNet6.String(), "via", s.HostAddr6.String(), "dev", s.GatewayIf)
		run(s.Server, "ip", "route", "add", s.Source4(i).String()+"/32", "via", nthAddr(t4, 1).String(), "dev", srvIf)
		run(s.Server, "ip", "-6", "route", "add", s.Source6(i).String()+"/128", "via", nthAddr(t6, 1).String(), "dev", srvIf)
		if i == 0 {
			run(s.Server, "ip", "route", "add", s.LANNet4.String(), "via", nthAddr(t4, 1).String(), "dev", srvIf)
			run(s.Server, "ip", "-6", "route", "add", s.LANNet6.String(), "via", nthAddr(t6, 1).String(), "dev", srvIf)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("building the shared LAN: %w", err)
	}
	return s, nil
}
