package bfd

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Ports of RFC 5881 §4 and RFC 5883 §5.
const (
	PortSingleHop = 3784
	PortMultihop  = 4784
	srcPortMin    = 49152
	srcPortMax    = 65535
	gtsmTTL       = 255
)

// received is one datagram a reader hands to the owner.
type received struct {
	pkt      *Packet
	raw      []byte
	src, dst netip.Addr
	ifindex  int
	ttl      int
	multihop bool
}

// listener is one receive socket: one per port and address family,
// bound to the wildcard address, reporting TTL (IP_RECVTTL or
// IPV6_RECVHOPLIMIT), destination and interface of every packet.
type listener struct {
	multihop bool
	c        net.PacketConn
	v4       *ipv4.PacketConn
	v6       *ipv6.PacketConn
}

func listen(port int, v6, multihop bool) (*listener, error) {
	network, addr := "udp4", fmt.Sprintf("0.0.0.0:%d", port)
	if v6 {
		network, addr = "udp6", fmt.Sprintf("[::]:%d", port)
	}
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s %s: %w", network, addr, err)
	}
	l := &listener{multihop: multihop, c: c}
	if v6 {
		l.v6 = ipv6.NewPacketConn(c)
		err = l.v6.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true)
	} else {
		l.v4 = ipv4.NewPacketConn(c)
		err = l.v4.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("asking for the TTL of packets on %s %s: %w", network, addr, err)
	}
	return l, nil
}

// read returns the next datagram that decodes; malformed ones are counted
// by the caller through bad and skipped.
func (l *listener) read(buf []byte, bad func(error)) (received, error) {
	for {
		var (
			n        int
			src      net.Addr
			err      error
			r        = received{multihop: l.multihop}
			dst      net.IP
			ttl, idx int
		)
		if l.v6 != nil {
			var cm *ipv6.ControlMessage
			n, cm, src, err = l.v6.ReadFrom(buf)
			if cm != nil {
				ttl, dst, idx = cm.HopLimit, cm.Dst, cm.IfIndex
			}
		} else {
			var cm *ipv4.ControlMessage
			n, cm, src, err = l.v4.ReadFrom(buf)
			if cm != nil {
				ttl, dst, idx = cm.TTL, cm.Dst, cm.IfIndex
			}
		}
		if err != nil {
			return r, err
		}
		ua, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		// Sessions name peers without a zone: the interface is the link.
		r.src = ua.AddrPort().Addr().WithZone("").Unmap()
		r.dst, _ = netip.AddrFromSlice(dst)
		r.dst = r.dst.Unmap()
		r.ttl, r.ifindex = ttl, idx
		r.raw = append([]byte(nil), buf[:n]...)
		if r.pkt, err = Decode(r.raw); err != nil {
			bad(err)
			continue
		}
		return r, nil
	}
}

func (l *listener) close() error { return l.c.Close() }

// sender is one session's transmit socket: its own source port in
// 49152-65535 (RFC 5881 §4: unique per session), TTL 255, and for a single
// hop session bound to its interface so that packets leave by that link
// whatever the routing tables say.
type sender struct {
	c    *net.UDPConn
	dst  netip.AddrPort
	port int
}

func dial(p Peer) (*sender, error) {
	network := "udp4"
	if p.Remote.Is6() {
		network = "udp6"
	}
	port := PortSingleHop
	if p.Multihop {
		port = PortMultihop
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if p.Interface != "" && !p.Multihop {
				if serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, p.Interface); serr != nil {
					serr = fmt.Errorf("binding to %s: %w", p.Interface, serr)
					return
				}
			}
			if p.Remote.Is6() {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, gtsmTTL)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, gtsmTTL)
			}
			if serr == nil {
				// CS6 (network control), as routers send BFD.
				if p.Remote.Is6() {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_TCLASS, 0xc0)
				} else {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TOS, 0xc0)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	local := netip.IPv4Unspecified()
	if p.Remote.Is6() {
		local = netip.IPv6Unspecified()
	}
	if p.Local.IsValid() {
		local = p.Local
	}
	// Random ports in the range until one binds; bounded.
	var last error
	for range 64 {
		sp := srcPortMin + rand.IntN(srcPortMax-srcPortMin+1)
		c, err := lc.ListenPacket(context.Background(), network, netip.AddrPortFrom(local, uint16(sp)).String())
		if err == nil {
			return &sender{c: c.(*net.UDPConn), dst: netip.AddrPortFrom(p.Remote, uint16(port)), port: sp}, nil
		}
		last = err
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, fmt.Errorf("opening a socket toward %s: %w", p.Remote, last)
}

func (s *sender) send(b []byte) error {
	_, err := s.c.WriteToUDPAddrPort(b, s.dst)
	return err
}

func (s *sender) close() error { return s.c.Close() }
