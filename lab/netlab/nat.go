package netlab

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NATUplinks is the number of uplinks of the NAT lab.
const NATUplinks = 4

// NATMode is how the NAT router translates traffic leaving an uplink.
type NATMode string

const (
	// NATMasquerade is `masquerade` on each uplink: the kernel picks the
	// interface's address, and drops a mapping whose output interface
	// changed (nf_nat_oif_changed).
	NATMasquerade NATMode = "masquerade"
	// NATSNAT is `snat to ADDR` with each uplink's own address: the
	// mapping stays for as long as the flow keeps sending, whatever route
	// its packets take.
	NATSNAT NATMode = "snat"
)

// NATTable is the nftables table (family ip) of the router's NAT rules;
// it exists only inside the router namespace.
const NATTable = "uplnat"

// Interface names of the NAT lab.
const (
	NATClientIf = "eth0" // Client side of the LAN
	NATLANIf    = "lan0" // Router side of the LAN
	NATISPIf    = "eth0" // ISP side of its uplink (where first-hop faults go)
	NATISPUpIf  = "eth1" // ISP side of its transit to the Server
)

// Address plan of the NAT lab.
var (
	NATLANNet4    = netip.MustParsePrefix("198.18.50.0/24")
	NATClientAddr = netip.MustParseAddr("198.18.50.2")
	NATRouterLAN  = netip.MustParseAddr("198.18.50.1")
)

// NATRouterIf is the router's interface to uplink n (1..NATUplinks).
func NATRouterIf(n int) string { return fmt.Sprintf("up%d", n) }

// NATServerIf is the Server's interface to ISP n: the name the echo
// responder reports, so a reply says which uplink its request took.
func NATServerIf(n int) string { return fmt.Sprintf("isp%d", n) }

// NATUplinkNet is uplink n's prefix, NATAddr the router's address on it
// (the uplink's NAT address) and NATGateway the ISP's (the gateway).
func NATUplinkNet(n int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(60 + n), 0}), 24)
}
func NATAddr(n int) netip.Addr    { return netip.AddrFrom4([4]byte{198, 18, byte(60 + n), 2}) }
func NATGateway(n int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(60 + n), 1}) }

func natTransit(n int) (isp, server netip.Addr) {
	return netip.AddrFrom4([4]byte{198, 18, byte(70 + n), 1}), netip.AddrFrom4([4]byte{198, 18, byte(70 + n), 2})
}

// NATLab is a NAT router with four uplinks, each to its own ISP, and a
// LAN client behind it:
//
//	                         up1 ── eth0 [ISP1] eth1 ── isp1
//	[Client] eth0 ── lan0 [Router] up2 ── eth0 [ISP2] eth1 ── isp2 [Server] lo: TargetAddr4
//	                         up3 ── eth0 [ISP3] eth1 ── isp3
//	                         up4 ── eth0 [ISP4] eth1 ── isp4
//
// The router forwards, hashes multipath flows by layer 4 (so UDP flows of
// one client spread over the uplinks) and translates what leaves each
// uplink to that uplink's address, as Mode says. It has no default route:
// that is the job of the code under test. Each ISP drops packets from its
// customer whose source is not the customer's address (strict rp_filter,
// as BCP 38 asks), so a flow that leaves through another uplink with a
// stale mapping is lost, as it would be on the Internet. The Server routes
// each uplink's prefix back through its ISP and runs nothing until a test
// starts the echo responder (ServeEcho) there.
type NATLab struct {
	Lab    *Lab
	Mode   NATMode
	Client *Host
	Router *Host
	ISPs   [NATUplinks]*Host
	Server *Host
}

// NewNATLab builds the NAT lab in lab, with hosts named client, nat,
// isp1..isp4 and srv.
func NewNATLab(lab *Lab, mode NATMode) (*NATLab, error) {
	if mode != NATMasquerade && mode != NATSNAT {
		return nil, fmt.Errorf("nat lab: unknown mode %q", mode)
	}
	n := &NATLab{Lab: lab, Mode: mode}
	var err error
	if n.Client, err = lab.Host("client"); err != nil {
		return nil, err
	}
	if n.Router, err = lab.Host("nat"); err != nil {
		return nil, err
	}
	if n.Server, err = lab.Host("srv"); err != nil {
		return nil, err
	}
	for i := range n.ISPs {
		if n.ISPs[i], err = lab.Host(fmt.Sprintf("isp%d", i+1)); err != nil {
			return nil, err
		}
	}
	if err := lab.Link(n.Client, NATClientIf, n.Router, NATLANIf); err != nil {
		return nil, err
	}
	type addr struct {
		h     *Host
		iface string
		cidr  string
	}
	addrs := []addr{
		{n.Client, NATClientIf, netip.PrefixFrom(NATClientAddr, 24).String()},
		{n.Router, NATLANIf, netip.PrefixFrom(NATRouterLAN, 24).String()},
		{n.Server, "lo", netip.PrefixFrom(TargetAddr4, 32).String()},
	}
	var cmds [][]string
	for i, isp := range n.ISPs {
		u := i + 1
		if err := lab.Link(n.Router, NATRouterIf(u), isp, NATISPIf); err != nil {
			return nil, err
		}
		if err := lab.Link(isp, NATISPUpIf, n.Server, NATServerIf(u)); err != nil {
			return nil, err
		}
		ispT, srvT := natTransit(u)
		addrs = append(addrs,
			addr{n.Router, NATRouterIf(u), netip.PrefixFrom(NATAddr(u), 24).String()},
			addr{isp, NATISPIf, netip.PrefixFrom(NATGateway(u), 24).String()},
			addr{isp, NATISPUpIf, netip.PrefixFrom(ispT, 24).String()},
			addr{n.Server, NATServerIf(u), netip.PrefixFrom(srvT, 24).String()},
		)
		cmds = append(cmds,
			[]string{isp.Name, "ip", "route", "add", "default", "via", srvT.String(), "dev", NATISPUpIf},
			[]string{n.Server.Name, "ip", "route", "add", NATUplinkNet(u).String(), "via", ispT.String(), "dev", NATServerIf(u)},
		)
	}
	for _, a := range addrs {
		if err := a.h.AddAddr(a.iface, a.cidr); err != nil {
			return nil, err
		}
	}
	cmds = append(cmds, []string{n.Client.Name, "ip", "route", "add", "default", "via", NATRouterLAN.String(), "dev", NATClientIf})
	hosts := map[string]*Host{n.Client.Name: n.Client, n.Server.Name: n.Server}
	for _, isp := range n.ISPs {
		hosts[isp.Name] = isp
	}
	for _, c := range cmds {
		if _, err := hosts[c[0]].MustRun(c[1:]...); err != nil {
			return nil, err
		}
	}
	for _, isp := range n.ISPs {
		for _, kv := range [][2]string{{"net.ipv4.ip_forward", "1"}, {"net.ipv4.conf." + NATISPIf + ".rp_filter", "1"}} {
			if err := isp.Sysctl(kv[0], kv[1]); err != nil {
				return nil, err
			}
		}
	}
	for _, kv := range [][2]string{{"net.ipv4.ip_forward", "1"}, {"net.ipv4.fib_multipath_hash_policy", "1"}} {
		if err := n.Router.Sysctl(kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	if err := nftBinary(); err != nil {
		return nil, err
	}
	if out, err := n.Router.RunInput(n.natRuleset(), "nft", "-f", "-"); err != nil {
		return nil, fmt.Errorf("[%s] nft: %v\n%s", n.Router.Name, err, out)
	}
	return n, nil
}

// natRuleset is the router's NAT table: one rule per uplink.
func (n *NATLab) natRuleset() string {
	var b strings.Builder
	fmt.Fprintf(&b, "add table ip %s\n", NATTable)
	fmt.Fprintf(&b, "add chain ip %s post { type nat hook postrouting priority srcnat; policy accept; }\n", NATTable)
	for u := 1; u <= NATUplinks; u++ {
		if n.Mode == NATMasquerade {
			fmt.Fprintf(&b, "add rule ip %s post oifname %q masquerade\n", NATTable, NATRouterIf(u))
		} else {
			fmt.Fprintf(&b, "add rule ip %s post oifname %q snat to %s\n", NATTable, NATRouterIf(u), NATAddr(u))
		}
	}
	return b.String()
}

// ISP returns the ISP host of uplink u (1..NATUplinks).
func (n *NATLab) ISP(u int) *Host { return n.ISPs[u-1] }

// StartEcho runs the echo responder (ServeEcho) in the Server namespace
// until stop is called; stop returns the responder's error.
func (n *NATLab) StartEcho() (stop func() error, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		served <- n.Server.Do(func() error {
			return ServeEcho(ctx, netip.IPv4Unspecified(), func() { close(ready) })
		})
	}()
	select {
	case <-ready:
	case err := <-served:
		cancel()
		return nil, fmt.Errorf("echo responder ended before it listened: %w", err)
	}
	var once sync.Once
	var serr error
	return func() error {
		once.Do(func() { cancel(); serr = <-served })
		return serr
	}, nil
}

// Conntrack lists the router's IPv4 conntrack entries, through a
// NETLINK_NETFILTER socket opened in its namespace.
func (n *NATLab) Conntrack() ([]*netlink.ConntrackFlow, error) {
	h, err := netlink.NewHandleAt(n.Router.NsHandle(), unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("[%s] opening a conntrack socket: %w", n.Router.Name, err)
	}
	defer h.Close()
	flows, err := h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("[%s] listing conntrack: %w", n.Router.Name, err)
	}
	return flows, nil
}

// UplinkOf returns the uplink (1..NATUplinks) whose NAT address a
// conntrack entry's replies go to, or 0.
func UplinkOf(f *netlink.ConntrackFlow) int {
	a, ok := netip.AddrFromSlice(f.Reverse.DstIP)
	if !ok {
		return 0
	}
	for u := 1; u <= NATUplinks; u++ {
		if a.Unmap() == NATAddr(u) {
			return u
		}
	}
	return 0
}

// ViaOf returns the Server interface that carried the last answered packet
// of flow sent in [from, to), or "" if none was answered.
func (t *Traffic) ViaOf(flow int, from, to time.Duration) string {
	f := t.Flows[flow]
	for seq := len(f.Sent) - 1; seq >= 0; seq-- {
		s := f.Sent[seq]
		if s < from || s >= to || f.Recv[seq] < 0 || f.Via[seq] == 0 || int(f.Via[seq]) > len(t.Ifaces) {
			continue
		}
		return t.Ifaces[f.Via[seq]-1]
	}
	return ""
}

// ClassicDefault makes the router's default a classic multipath route over
// the uplinks ups (1..NATUplinks), as a host without uplinkd would have.
func (n *NATLab) ClassicDefault(ups ...int) error {
	args := []string{"ip", "route", "replace", "default"}
	for _, u := range ups {
		args = append(args, "nexthop", "via", NATGateway(u).String(), "dev", NATRouterIf(u))
	}
	_, err := n.Router.MustRun(args...)
	return err
}
