package detector

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
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
	Kind    ProbeKind      // a kind with a sender: KindICMP, KindTCP, KindHTTP, KindDNS
	Addr    netip.AddrPort // port is used by the connection kinds only
	OnLink  bool           // the target is the gateway itself
	Iface   string
	IfIndex int
	Source  netip.Addr       // the uplink's address; zero lets the kernel choose
	NextHop netip.Addr       // the gateway
	HwAddr  net.HardwareAddr // the gateway's link-layer address, for pin = device
	Pin     policy.Pin
	Mark    uint32
	Timeout time.Duration
	HTTP    *policy.HTTPCheck // KindHTTP: the request and the expected status
	DNS     *policy.DNSCheck  // KindDNS: the query and the expected answer
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
	id     uint16 // the echo id the reply must carry
	target netip.Addr
	token  [tokenLen]byte
	done   chan time.Time // when the matching reply was read
}

// SocketProber is the real Prober: ICMP sockets (one per family, shared
// by every probe), AF_PACKET for remote targets pinned to a device, and TCP
// connects. It is written on golang.org/x/net/icmp rather than pro-bing
// (docs/design.md, "Why our own prober"): pro-bing does pin to an
// interface and a source address now, but it cannot send a remote probe as
// a frame to one gateway's MAC, does not check a reply's source, and opens
// a socket (and goroutines) per run. A shared socket with a pending table
// is cheap per probe and checks ID, sequence, source and a random token.
//
// Raw sockets (CAP_NET_RAW) are used when allowed. Without them it falls
// back to unprivileged ICMP datagram sockets (net.ipv4.ping_group_range):
// the kernel then rewrites the echo id to the socket's own and delivers
// only that socket's replies, so each datagram socket has its own id and
// reader. Remote targets pinned to a device then go through the ICMP
// socket bound by IP_PKTINFO instead of a frame (AF_PACKET needs
// CAP_NET_RAW too).
type SocketProber struct {
	ns      netns.NsHandle
	log     *slog.Logger
	now     func() time.Time
	id      uint16 // echo id of raw sockets
	seq     atomic.Uint32
	senders map[ProbeKind]func(context.Context, Target) (time.Duration, error)

	c4, c6 *icmpConn
	pkt    int // AF_PACKET SOCK_DGRAM, protocol 0: sends only, receives nothing

	mu      sync.Mutex
	pending map[uint16]*pendingEcho
	marks   map[markKey]*icmpConn

	// Ignored counts replies that carried one of our ids but matched no
	// pending probe (spoofed, late, duplicated); each is logged at Debug.
	Ignored atomic.Uint64

	readers   []*beat // one per reader goroutine, for Liveness
	cas       caCache // http_ca_file pools
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// icmpConn is one ICMP socket, raw or datagram.
type icmpConn struct {
	c     *icmp.PacketConn
	v6    bool
	dgram bool
	id    uint16 // the echo id replies to this socket carry
}

type markKey struct {
	v6   bool
	mark uint32
}

// NewSocketProber opens the probe sockets in namespace ns (netns.None()
// for the current one) and starts their readers; Close stops them.
func NewSocketProber(ns netns.NsHandle, log *slog.Logger) (*SocketProber, error) {
	return newSocketProber(ns, log, false, nil)
}

// newSocketProber opens the prober with only datagram sockets when
// dgramOnly is set, with clock now (nil: time.Now) for round-trip times.
func newSocketProber(ns netns.NsHandle, log *slog.Logger, dgramOnly bool, now func() time.Time) (*SocketProber, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	var idb [2]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, fmt.Errorf("choosing an ICMP id: %w", err)
	}
	p := &SocketProber{ns: ns, log: log, now: now, id: binary.BigEndian.Uint16(idb[:]), pkt: -1,
		pending: map[uint16]*pendingEcho{}, marks: map[markKey]*icmpConn{}}
	// The senders registry: one entry per kind this prober sends.
	p.senders = map[ProbeKind]func(context.Context, Target) (time.Duration, error){
		KindICMP: p.probeICMP,
		KindTCP:  p.probeTCP,
		KindHTTP: p.probeHTTP,
		KindDNS:  p.probeDNS,
	}
	err := InNamespace(ns, func() error {
		var err error
		if p.c4, err = p.openICMP(false, dgramOnly); err != nil {
			return fmt.Errorf("opening ICMP socket: %w", err)
		}
		if p.c6, err = p.openICMP(true, dgramOnly); err != nil {
			// A host without IPv6 still probes IPv4 gateways.
			p.log.Debug("no ICMPv6 socket", "err", err)
			p.c6 = nil
		}
		if dgramOnly {
			return nil
		}
		if p.pkt, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			p.pkt = -1
			p.log.Info("no packet socket: remote targets pinned to a device need a route through their gateway", "err", err)
		}
		return nil
	})
	if err != nil {
		p.Close()
		return nil, err
	}
	for _, ic := range []*icmpConn{p.c4, p.c6} {
		if ic == nil {
			continue
		}
		p.filter(ic, false)
		p.mu.Lock()
		p.startReaderLocked(ic)
		p.mu.Unlock()
	}
	return p, nil
}

// openICMP opens a raw ICMP socket, or a datagram one when raw sockets are
// not permitted (or dgram is asked for). It must run in the namespace.
func (p *SocketProber) openICMP(v6, dgram bool) (*icmpConn, error) {
	raw, udp, any := "ip4:icmp", "udp4", "0.0.0.0"
	if v6 {
		raw, udp, any = "ip6:ipv6-icmp", "udp6", "::"
	}
	if !dgram {
		c, err := icmp.ListenPacket(raw, any)
		if err == nil {
			return &icmpConn{c: c, v6: v6, id: p.id}, nil
		}
		if !errors.Is(err, os.ErrPermission) {
			return nil, err
		}
		p.log.Info("no raw ICMP socket, using an unprivileged ICMP datagram socket", "err", err)
	}
	c, err := icmp.ListenPacket(udp, any)
	if err != nil {
		return nil, fmt.Errorf("opening ICMP datagram socket (is the group in net.ipv4.ping_group_range?): %w", err)
	}
	ua, _ := c.LocalAddr().(*net.UDPAddr)
	if ua == nil {
		c.Close()
		return nil, errors.New("ICMP datagram socket without a local id")
	}
	return &icmpConn{c: c, v6: v6, dgram: true, id: uint16(ua.Port)}, nil
}

// filter makes the kernel pass only echo replies (or nothing, for a
// send-only raw socket) to a raw socket.
func (p *SocketProber) filter(ic *icmpConn, none bool) {
	if ic.dgram {
		return // the kernel already delivers only this socket's replies
	}
	var err error
	if ic.v6 {
		var f ipv6.ICMPFilter
		f.SetAll(true)
		if !none {
			f.Accept(ipv6.ICMPTypeEchoReply)
		}
		err = ic.c.IPv6PacketConn().SetICMPFilter(&f)
	} else {
		var f ipv4.ICMPFilter
		f.SetAll(true)
		if !none {
			f.Accept(ipv4.ICMPTypeEchoReply)
		}
		err = ic.c.IPv4PacketConn().SetICMPFilter(&f)
	}
	if err != nil {
		p.log.Debug("setting ICMP filter", "err", err)
	}
}

// write sends an ICMP message, pinned by source and interface index
// (IP_PKTINFO / IPV6_PKTINFO) when given.
func (ic *icmpConn) write(b []byte, src netip.Addr, ifindex int, dst netip.Addr) error {
	var to net.Addr = &net.IPAddr{IP: dst.AsSlice()}
	if ic.dgram {
		to = &net.UDPAddr{IP: dst.AsSlice()}
	}
	var err error
	if ic.v6 {
		_, err = ic.c.IPv6PacketConn().WriteTo(b, srcCM6(src, ifindex), to)
	} else {
		_, err = ic.c.IPv4PacketConn().WriteTo(b, srcCM4(src, ifindex), to)
	}
	return err
}

// Close closes the sockets and waits for the readers. Idempotent.
func (p *SocketProber) Close() error {
	p.closeOnce.Do(func() {
		for _, ic := range []*icmpConn{p.c4, p.c6} {
			if ic != nil {
				ic.c.Close()
			}
		}
		if p.pkt >= 0 {
			unix.Close(p.pkt)
		}
		p.mu.Lock()
		for _, ic := range p.marks {
			ic.c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return nil
}

// startReaderLocked starts the reader of one socket, with its liveness
// beat. p.mu is held.
func (p *SocketProber) startReaderLocked(ic *icmpConn) {
	name := "prober reader icmp"
	if ic.v6 {
		name += "v6"
	}
	if ic.dgram {
		name += fmt.Sprintf(" id %d", ic.id)
	}
	b := newBeat(name)
	p.readers = append(p.readers, b)
	p.wg.Add(1)
	go p.read(ic, b)
}

// Liveness reports the readers: busy while handling a packet, idle while
// waiting for one.
func (p *SocketProber) Liveness() []Worker {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Worker, 0, len(p.readers))
	for _, b := range p.readers {
		out = append(out, b.report())
	}
	return out
}

func (p *SocketProber) read(ic *icmpConn, live *beat) {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		live.idle(p.now())
		n, from, err := ic.c.ReadFrom(buf)
		now := p.now()
		live.begin(now)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				live.idle(now)
				return
			}
			p.log.Debug("reading ICMP", "err", err)
			continue
		}
		src, _ := netip.AddrFromSlice(addrIP(from))
		r, ok := ParseEchoReply(buf[:n], ic.v6)
		if !ok {
			continue
		}
		p.deliver(ic, r, src.Unmap(), now)
	}
}

func addrIP(a net.Addr) net.IP {
	switch a := a.(type) {
	case *net.IPAddr:
		return a.IP
	case *net.UDPAddr:
		return a.IP
	}
	return nil
}

func (p *SocketProber) deliver(ic *icmpConn, r EchoReply, src netip.Addr, now time.Time) {
	if r.ID != ic.id {
		return // other programs' pings, seen by a raw socket
	}
	p.mu.Lock()
	e := p.pending[r.Seq]
	var err error
	if e == nil {
		err = errors.New("no probe pending with this sequence")
	} else if err = matchReply(e, r, src); err == nil {
		delete(p.pending, r.Seq)
	}
	p.mu.Unlock()
	if err != nil {
		p.Ignored.Add(1)
		p.log.Debug("ignoring echo reply", "from", src, "id", r.ID, "seq", r.Seq, "err", err)
		return
	}
	e.done <- now
}

// Probe sends one probe and waits for its answer.
func (p *SocketProber) Probe(ctx context.Context, t Target) (time.Duration, error) {
	if t.Timeout <= 0 {
		t.Timeout = time.Second
	}
	if t.Kind == "" {
		t.Kind = KindICMP
	}
	send := p.senders[t.Kind]
	if send == nil {
		return 0, fmt.Errorf("probing %s: unknown kind %q", t.Addr, t.Kind)
	}
	return send(ctx, t)
}

func (p *SocketProber) probeICMP(ctx context.Context, t Target) (time.Duration, error) {
	dst := t.Addr.Addr().Unmap()
	v6 := dst.Is6()
	ic, frame, ifindex, err := p.route(t, dst, v6)
	if err != nil {
		return 0, fmt.Errorf("probing %s via %s: %w", dst, t.Iface, err)
	}
	e := &pendingEcho{id: ic.id, target: dst, done: make(chan time.Time, 1)}
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
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: int(ic.id), Seq: int(seq), Data: e.token[:]}}

	sent := p.now()
	if frame {
		err = p.sendFrame(t, &msg, dst, v6)
	} else {
		var b []byte
		if b, err = msg.Marshal(nil); err == nil { // ICMPv6 checksums are the kernel's
			err = ic.write(b, t.Source, ifindex, dst)
		}
	}
	if err != nil {
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

// route picks how a probe leaves: which socket (whose id the reply will
// carry), whether as a frame to the gateway's MAC, and the interface index
// it is pinned to.
func (p *SocketProber) route(t Target, dst netip.Addr, v6 bool) (ic *icmpConn, frame bool, ifindex int, err error) {
	ic = p.c4
	if v6 {
		ic = p.c6
	}
	if ic == nil {
		return nil, false, 0, errors.New("no ICMPv6 socket")
	}
	remote := !t.OnLink && dst != t.NextHop
	switch t.Pin {
	case policy.PinMark:
		if t.Mark == 0 {
			return ic, false, 0, nil
		}
		mc, err := p.markConn(v6, t.Mark)
		if err != nil {
			return nil, false, 0, err
		}
		if mc.dgram {
			return mc, false, 0, nil // replies come back to this socket
		}
		// A raw send-only socket: the shared raw socket reads the reply.
		return &icmpConn{c: mc.c, v6: v6, id: ic.id}, false, 0, nil
	case policy.PinSource:
		return ic, false, 0, nil
	}
	// A remote target, or the gateway itself when the detector gave its
	// MAC (it shares its interface with other gateways, so routing by
	// the source's table could hand the probe to another of them): a
	// frame to that MAC reaches that gateway whatever the tables say. A
	// gateway that is the link itself (a point-to-point device, "default
	// dev ppp0") has no MAC and needs none: the device has one peer, and
	// a probe bound to it reaches that peer even where no route names
	// the device (the kernel takes the destination as on-link then).
	if p.pkt >= 0 && t.NextHop.IsValid() && (remote || len(t.HwAddr) > 0) {
		return ic, true, 0, nil
	}
	return ic, false, t.IfIndex, nil
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

// markConn returns a socket carrying SO_MARK (CAP_NET_ADMIN), so the
// policy's "fwmark MARK lookup <gateway table>" rule routes the probe. A
// raw one only sends (the shared socket reads replies); a datagram one
// gets its own reader, since the kernel hands it its replies alone.
func (p *SocketProber) markConn(v6 bool, mark uint32) (*icmpConn, error) {
	k := markKey{v6, mark}
	p.mu.Lock()
	c := p.marks[k]
	p.mu.Unlock()
	if c != nil {
		return c, nil
	}
	shared := p.c4
	if v6 {
		shared = p.c6
	}
	// Opened without the lock: entering the namespace waits on another
	// goroutine.
	var ic *icmpConn
	err := InNamespace(p.ns, func() error {
		var err error
		ic, err = p.openICMP(v6, shared.dgram)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening marked ICMP socket: %w", err)
	}
	if err := setSockopt(rawConnOf(ic.c, v6), func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
			return err
		}
		if ic.dgram {
			return nil
		}
		// Send only: a tiny buffer stops it from holding copies.
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1)
	}); err != nil {
		ic.c.Close()
		return nil, fmt.Errorf("setting SO_MARK %d: %w", mark, err)
	}
	p.mu.Lock()
	if c := p.marks[k]; c != nil {
		p.mu.Unlock()
		ic.c.Close() // another probe opened it meanwhile
		return c, nil
	}
	p.marks[k] = ic
	if ic.dgram {
		// Under the lock, so that Close cannot be waiting already.
		p.startReaderLocked(ic)
	}
	p.mu.Unlock()
	if !ic.dgram {
		p.filter(ic, true)
	}
	return ic, nil
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

// probeTCP connects to t.Addr through the uplink. Unlike ICMP it cannot
// go out as a frame: with pin = device it is bound to the interface, and
// when no route through that interface covers the target the kernel
// assumes the target is on-link, so the probe fails while the gateway is
// withdrawn from every route. TCP targets that must recover a down
// gateway want pin = "mark" (its own table, on_down = "keep") or
// pin = "source" with a per-source table.
func (p *SocketProber) probeTCP(ctx context.Context, t Target) (time.Duration, error) {
	d := pinnedDialer(t, "tcp")
	var rtt time.Duration
	// The socket must be created in the probed namespace; the connect
	// runs on that locked thread for at most Timeout.
	err := InNamespace(p.ns, func() error {
		start := p.now()
		c, err := d.DialContext(ctx, "tcp", t.Addr.String())
		if err != nil {
			return err
		}
		rtt = p.now().Sub(start)
		return c.Close()
	})
	if err != nil {
		return 0, fmt.Errorf("connecting to %s via %s: %w", t.Addr, t.Iface, err)
	}
	return rtt, nil
}
