package detector

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/policy"
)

// Target is one probe: where it goes and how it is pinned to its uplink.
type Target struct {
	Gateway string
	Kind    string         // KindICMP or KindTCP
	Addr    netip.AddrPort // port is used for TCP only
	OnLink  bool           // the target is the gateway itself
	Iface   string
	IfIndex int
	Source  netip.Addr       // the uplink's address; zero lets the kernel choose
	NextHop netip.Addr       // the gateway
	HwAddr  net.HardwareAddr // the gateway's link-layer address, for pin = device
	Pin     string
	Mark    uint32
	Timeout time.Duration
}

// Prober sends probes. Probe blocks until the answer or the timeout and
// returns the round-trip time; any error means the probe was lost.
type Prober interface {
	Probe(ctx context.Context, t Target) (time.Duration, error)
	Close() error
}

// errTimeout is a lost probe.
var errTimeout = errors.New("no reply")

// tokenLen is the random payload that a reply must echo back.
const tokenLen = 16

type pendingEcho struct {
	target netip.Addr
	token  [tokenLen]byte
	done   chan time.Time // when the matching reply was read
}

// SocketProber is the real Prober: raw ICMP sockets (one per family,
// shared by every probe), AF_PACKET for remote targets pinned to a device,
// and TCP connects. pro-bing is not used: it opens a socket and goroutines
// per run and has no per-packet interface or source pinning, no way to send
// a remote probe as a frame to one gateway's MAC, and does not check the
// reply's source; a shared raw socket with a pending table is cheap per
// probe and checks ID, sequence, source and a random token.
type SocketProber struct {
	ns  netns.NsHandle
	log *slog.Logger
	id  uint16
	seq atomic.Uint32

	c4, c6 *icmp.PacketConn
	p4, p6 *ipv4.PacketConn
	q6     *ipv6.PacketConn
	pkt    int // AF_PACKET SOCK_DGRAM, protocol 0: sends only, receives nothing

	mu      sync.Mutex
	pending map[uint16]*pendingEcho
	marks   map[markKey]*icmp.PacketConn

	// Ignored counts replies that matched nothing we sent (spoofed, stale,
	// other programs' pings); each is logged at Debug.
	Ignored atomic.Uint64

	wg        sync.WaitGroup
	closeOnce sync.Once
}

type markKey struct {
	v6   bool
	mark uint32
}

// NewSocketProber opens the probe sockets in namespace ns (netns.None()
// for the current one) and starts their readers; Close stops them.
func NewSocketProber(ns netns.NsHandle, log *slog.Logger) (*SocketProber, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var idb [2]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, fmt.Errorf("choosing an ICMP id: %w", err)
	}
	p := &SocketProber{ns: ns, log: log, id: binary.BigEndian.Uint16(idb[:]), pkt: -1,
		pending: map[uint16]*pendingEcho{}, marks: map[markKey]*icmp.PacketConn{}}
	err := InNamespace(ns, func() error {
		var err error
		if p.c4, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0"); err != nil {
			return fmt.Errorf("opening raw ICMP socket: %w", err)
		}
		if p.c6, err = icmp.ListenPacket("ip6:ipv6-icmp", "::"); err != nil {
			// A host without IPv6 still probes IPv4 gateways.
			p.log.Debug("no raw ICMPv6 socket", "err", err)
			p.c6 = nil
		}
		if p.pkt, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			p.pkt = -1
			p.log.Debug("no packet socket: remote targets with pin = device cannot be probed", "err", err)
		}
		return nil
	})
	if err != nil {
		p.Close()
		return nil, err
	}
	p.p4 = p.c4.IPv4PacketConn()
	var f4 ipv4.ICMPFilter
	f4.SetAll(true)
	f4.Accept(ipv4.ICMPTypeEchoReply)
	if err := p.p4.SetICMPFilter(&f4); err != nil {
		p.log.Debug("setting ICMP filter", "err", err)
	}
	p.wg.Add(1)
	go p.read(p.c4, false)
	if p.c6 != nil {
		p.q6 = p.c6.IPv6PacketConn()
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeEchoReply)
		if err := p.q6.SetICMPFilter(&f); err != nil {
			p.log.Debug("setting ICMPv6 filter", "err", err)
		}
		p.wg.Add(1)
		go p.read(p.c6, true)
	}
	return p, nil
}

// Close closes the sockets and waits for the readers. Idempotent.
func (p *SocketProber) Close() error {
	p.closeOnce.Do(func() {
		if p.c4 != nil {
			p.c4.Close()
		}
		if p.c6 != nil {
			p.c6.Close()
		}
		if p.pkt >= 0 {
			unix.Close(p.pkt)
		}
		p.mu.Lock()
		for _, c := range p.marks {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return nil
}

func (p *SocketProber) read(c *icmp.PacketConn, v6 bool) {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Debug("reading ICMP", "err", err)
			continue
		}
		now := time.Now()
		src, _ := netip.AddrFromSlice(addrIP(from))
		r, ok := ParseEchoReply(buf[:n], v6)
		if !ok {
			continue
		}
		p.deliver(r, src.Unmap(), now)
	}
}

func addrIP(a net.Addr) net.IP {
	if ia, ok := a.(*net.IPAddr); ok {
		return ia.IP
	}
	return nil
}

// EchoReply is a parsed ICMP or ICMPv6 echo reply.
type EchoReply struct {
	ID, Seq uint16
	Data    []byte
}

// ParseEchoReply parses an ICMP message (without IP header) and reports
// whether it is an echo reply. It never panics on any input.
func ParseEchoReply(b []byte, v6 bool) (EchoReply, bool) {
	proto := 1
	if v6 {
		proto = 58
	}
	m, err := icmp.ParseMessage(proto, b)
	if err != nil {
		return EchoReply{}, false
	}
	if m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply {
		return EchoReply{}, false
	}
	e, ok := m.Body.(*icmp.Echo)
	if !ok {
		return EchoReply{}, false
	}
	return EchoReply{ID: uint16(e.ID), Seq: uint16(e.Seq), Data: e.Data}, true
}

// matchReply says whether reply r from src answers pending echo e sent
// with our id. Anything else is ignored, whatever it claims.
func matchReply(e *pendingEcho, id uint16, r EchoReply, src netip.Addr) error {
	switch {
	case r.ID != id:
		return errors.New("id mismatch")
	case src != e.target:
		return fmt.Errorf("source %s is not the target %s", src, e.target)
	case len(r.Data) < tokenLen || !bytes.Equal(r.Data[:tokenLen], e.token[:]):
		return errors.New("payload token mismatch")
	}
	return nil
}

func (p *SocketProber) deliver(r EchoReply, src netip.Addr, now time.Time) {
	p.mu.Lock()
	e := p.pending[r.Seq]
	var err error
	if e == nil {
		err = errors.New("no probe pending with this sequence")
	} else if err = matchReply(e, p.id, r, src); err == nil {
		delete(p.pending, r.Seq)
	}
	p.mu.Unlock()
	if err != nil {
		if r.ID == p.id {
			// Other programs' pings are not worth counting; replies
			// carrying our id that do not match are.
			p.Ignored.Add(1)
			p.log.Debug("ignoring echo reply", "from", src, "id", r.ID, "seq", r.Seq, "err", err)
		}
		return
	}
	e.done <- now
}

// Probe sends one probe and waits for its answer.
func (p *SocketProber) Probe(ctx context.Context, t Target) (time.Duration, error) {
	if t.Timeout <= 0 {
		t.Timeout = time.Second
	}
	switch t.Kind {
	case KindTCP:
		return p.probeTCP(ctx, t)
	case KindICMP, "":
		return p.probeICMP(ctx, t)
	}
	return 0, fmt.Errorf("probing %s: unknown kind %q", t.Addr, t.Kind)
}

func (p *SocketProber) probeICMP(ctx context.Context, t Target) (time.Duration, error) {
	dst := t.Addr.Addr().Unmap()
	v6 := dst.Is6()
	if v6 && p.c6 == nil {
		return 0, errors.New("no ICMPv6 socket")
	}
	e := &pendingEcho{target: dst, done: make(chan time.Time, 1)}
	if _, err := rand.Read(e.token[:]); err != nil {
		return 0, err
	}
	var seq uint16
	p.mu.Lock()
	for i := 0; i < 1<<16; i++ {
		seq = uint16(p.seq.Add(1))
		if p.pending[seq] == nil {
			break
		}
	}
	p.pending[seq] = e
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		if p.pending[seq] == e {
			delete(p.pending, seq)
		}
		p.mu.Unlock()
	}()

	var typ icmp.Type = ipv4.ICMPTypeEcho
	if v6 {
		typ = ipv6.ICMPTypeEchoRequest
	}
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: int(p.id), Seq: int(seq), Data: e.token[:]}}

	sent := time.Now()
	if err := p.send(t, &msg, dst, v6); err != nil {
		return 0, fmt.Errorf("sending echo request to %s via %s: %w", dst, t.Iface, err)
	}
	timer := time.NewTimer(t.Timeout)
	defer timer.Stop()
	select {
	case at := <-e.done:
		return at.Sub(sent), nil
	case <-timer.C:
		return 0, fmt.Errorf("echo to %s via %s: %w after %s", dst, t.Iface, errTimeout, fmtDur(t.Timeout))
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (p *SocketProber) send(t Target, msg *icmp.Message, dst netip.Addr, v6 bool) error {
	remote := !t.OnLink && dst != t.NextHop
	switch {
	case t.Pin == policy.PinMark && t.Mark != 0:
		c, err := p.markConn(v6, t.Mark)
		if err != nil {
			return err
		}
		b, err := marshalEcho(msg, t.Source, dst, v6)
		if err != nil {
			return err
		}
		if v6 {
			_, err = c.IPv6PacketConn().WriteTo(b, srcCM6(t.Source, 0), &net.IPAddr{IP: dst.AsSlice()})
		} else {
			_, err = c.IPv4PacketConn().WriteTo(b, srcCM4(t.Source, 0), &net.IPAddr{IP: dst.AsSlice()})
		}
		return err
	case remote && (t.Pin == policy.PinDevice || t.Pin == ""):
		return p.sendFrame(t, msg, dst, v6)
	}
	ifindex := 0
	if t.Pin == policy.PinDevice || t.Pin == "" {
		ifindex = t.IfIndex
	}
	b, err := marshalEcho(msg, t.Source, dst, v6)
	if err != nil {
		return err
	}
	ipdst := &net.IPAddr{IP: dst.AsSlice()}
	if v6 {
		_, err = p.q6.WriteTo(b, srcCM6(t.Source, ifindex), ipdst)
	} else {
		_, err = p.p4.WriteTo(b, srcCM4(t.Source, ifindex), ipdst)
	}
	return err
}

func srcCM4(src netip.Addr, ifindex int) *ipv4.ControlMessage {
	cm := &ipv4.ControlMessage{IfIndex: ifindex}
	if src.IsValid() {
		cm.Src = src.AsSlice()
	}
	if cm.IfIndex == 0 && cm.Src == nil {
		return nil
	}
	return cm
}

func srcCM6(src netip.Addr, ifindex int) *ipv6.ControlMessage {
	cm := &ipv6.ControlMessage{IfIndex: ifindex}
	if src.IsValid() {
		cm.Src = src.AsSlice()
	}
	if cm.IfIndex == 0 && cm.Src == nil {
		return nil
	}
	return cm
}

func marshalEcho(msg *icmp.Message, src, dst netip.Addr, v6 bool) ([]byte, error) {
	if !v6 {
		return msg.Marshal(nil)
	}
	// Raw ICMPv6 sockets have the kernel fill in the checksum.
	return msg.Marshal(nil)
}

// markConn returns a send-only raw socket carrying SO_MARK, so the
// policy's "fwmark MARK lookup <gateway table>" rule routes the probe.
func (p *SocketProber) markConn(v6 bool, mark uint32) (*icmp.PacketConn, error) {
	k := markKey{v6, mark}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.marks[k]; c != nil {
		return c, nil
	}
	var c *icmp.PacketConn
	err := InNamespace(p.ns, func() error {
		var err error
		if v6 {
			c, err = icmp.ListenPacket("ip6:ipv6-icmp", "::")
		} else {
			c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening marked ICMP socket: %w", err)
	}
	if err := setSockopt(rawConnOf(c, v6), func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
			return err
		}
		// Send only: replies are read by the shared socket. A tiny
		// buffer stops this one from holding copies.
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1)
	}); err != nil {
		c.Close()
		return nil, fmt.Errorf("setting SO_MARK %d: %w", mark, err)
	}
	if v6 {
		var f ipv6.ICMPFilter
		f.SetAll(true)
		_ = c.IPv6PacketConn().SetICMPFilter(&f)
	}
	p.marks[k] = c
	return c, nil
}

func rawConnOf(c *icmp.PacketConn, v6 bool) net.PacketConn {
	if v6 {
		return c.IPv6PacketConn().PacketConn
	}
	return c.IPv4PacketConn().PacketConn
}

func setSockopt(c net.PacketConn, fn func(fd int) error) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return errors.New("no raw connection")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = fn(int(fd)) }); err != nil {
		return err
	}
	return serr
}

// sendFrame sends the echo request as a link-layer frame addressed to the
// gateway's MAC on the uplink: the probe physically cannot leave through
// another gateway, and it needs no route, which matters most when the
// gateway is down and withdrawn from the routing table.
func (p *SocketProber) sendFrame(t Target, msg *icmp.Message, dst netip.Addr, v6 bool) error {
	if p.pkt < 0 {
		return errors.New("no packet socket")
	}
	if len(t.HwAddr) == 0 {
		return fmt.Errorf("link-layer address of gateway %s on %s unknown", t.NextHop, t.Iface)
	}
	if !t.Source.IsValid() {
		return fmt.Errorf("no source address on %s", t.Iface)
	}
	pkt, err := BuildEchoPacket(msg, t.Source, dst)
	if err != nil {
		return err
	}
	proto := uint16(unix.ETH_P_IP)
	if v6 {
		proto = unix.ETH_P_IPV6
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: t.IfIndex, Halen: uint8(len(t.HwAddr))}
	copy(sa.Addr[:], t.HwAddr)
	return unix.Sendto(p.pkt, pkt, 0, sa)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// BuildEchoPacket returns an IPv4 or IPv6 packet carrying the ICMP message
// from src to dst, checksums filled in.
func BuildEchoPacket(msg *icmp.Message, src, dst netip.Addr) ([]byte, error) {
	if src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("source %s and destination %s differ in family", src, dst)
	}
	if dst.Is4() {
		body, err := msg.Marshal(nil)
		if err != nil {
			return nil, err
		}
		h := make([]byte, 20, 20+len(body))
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(body)))
		var idb [2]byte
		_, _ = rand.Read(idb[:])
		copy(h[4:6], idb[:])
		h[6] = 0x40 // DF
		h[8] = 64
		h[9] = 1
		s4, d4 := src.As4(), dst.As4()
		copy(h[12:16], s4[:])
		copy(h[16:20], d4[:])
		binary.BigEndian.PutUint16(h[10:], checksum(h))
		return append(h, body...), nil
	}
	body, err := msg.Marshal(icmp.IPv6PseudoHeader(src.AsSlice(), dst.AsSlice()))
	if err != nil {
		return nil, err
	}
	h := make([]byte, 40, 40+len(body))
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(body)))
	h[6] = 58
	h[7] = 64
	s16, d16 := src.As16(), dst.As16()
	copy(h[8:24], s16[:])
	copy(h[24:40], d16[:])
	return append(h, body...), nil
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func (p *SocketProber) probeTCP(ctx context.Context, t Target) (time.Duration, error) {
	d := net.Dialer{Timeout: t.Timeout}
	if t.Source.IsValid() && t.Pin != policy.PinMark {
		d.LocalAddr = &net.TCPAddr{IP: t.Source.AsSlice()}
	}
	d.Control = func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			switch t.Pin {
			case policy.PinMark:
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(t.Mark))
			case policy.PinDevice, "":
				serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, t.Iface)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
	var rtt time.Duration
	// The socket must be created in the probed namespace; the connect
	// runs on that locked thread for at most Timeout.
	err := InNamespace(p.ns, func() error {
		start := time.Now()
		c, err := d.DialContext(ctx, "tcp", t.Addr.String())
		if err != nil {
			return err
		}
		rtt = time.Since(start)
		return c.Close()
	})
	if err != nil {
		return 0, fmt.Errorf("connecting to %s via %s: %w", t.Addr, t.Iface, err)
	}
	return rtt, nil
}
