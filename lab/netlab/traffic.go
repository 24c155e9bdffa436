package netlab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
)

// Ports of the echo responder (`uplinkd-lab echo`) on the Server.
const (
	EchoPort    = 7 // UDP: replies to requests that ask for it; TCP: discards
	DiscardPort = 9 // TCP: discards, for the bounded TCP stream
)

// Wire format of a lab datagram. The reply repeats the request's header and
// adds the name of the Server interface the request arrived on, which tells
// the sender which gateway carried it.
const (
	magic      = 0x55504c42 // "UPLB"
	hdrLen     = 20         // magic u32, flow u16, flags u16, seq u32, send ns i64
	ifNameOff  = hdrLen
	packetLen  = 64
	flagReply  = 1
	maxIfName  = 16
	lingerTime = time.Second // how long replies are awaited after the last send
)

// UDPConfig is a bounded UDP traffic run.
type UDPConfig struct {
	Target   netip.AddrPort  // the Server's echo responder
	Flows    int             // parallel flows, each its own source port
	Ports    []int           // source port per flow; empty or 0: any free port
	Rate     int             // packets per second over all flows
	Duration time.Duration   // sending stops after this
	OneWay   bool            // ask for no replies (tx without rx)
	Stop     <-chan struct{} // closed: stop sending early (replies are still awaited)
	Progress *Progress       // optional live view while the run is going on
}

// Progress is a live view of a running UDP run, for deciding when a fault
// has been survived; safe for concurrent use. The full record comes from
// RunUDP's result.
type Progress struct {
	mu       sync.Mutex
	start    time.Time
	lastRecv []time.Time          // per flow, zero before the first reply
	lastVia  map[string]time.Time // per Server interface
}

func (p *Progress) init(start time.Time, flows int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.start = start
	p.lastRecv = make([]time.Time, flows)
	p.lastVia = map[string]time.Time{}
}

func (p *Progress) got(flow int, iface string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastRecv[flow] = at
	if iface != "" {
		p.lastVia[iface] = at
	}
}

// Flowing reports whether every flow has had a reply within the last
// within, i.e. nothing is cut off right now.
func (p *Progress) Flowing(within time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.lastRecv) == 0 {
		return false
	}
	now := time.Now()
	for _, t := range p.lastRecv {
		if t.IsZero() || now.Sub(t) > within {
			return false
		}
	}
	return true
}

// LastVia is when the last reply through Server interface iface arrived
// (zero if none yet).
func (p *Progress) LastVia(iface string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastVia[iface]
}

// MaxPackets bounds a run whatever its configuration.
const MaxPackets = 2_000_000

// Flow is one UDP flow's record. Times are offsets from Traffic.Start; -1
// means "not sent" / "no reply".
type Flow struct {
	Port int
	Sent []time.Duration // by sequence number
	Recv []time.Duration
	Via  []uint8 // index+1 into Traffic.Ifaces of the Server interface, 0 if unknown
}

// Traffic is the record of a UDP run.
type Traffic struct {
	Start  time.Time // monotonic origin of every offset
	End    time.Duration
	Ifaces []string // Server interface names seen in replies
	Flows  []*Flow
	Errors int // send errors (e.g. ENETUNREACH with no route)
}

// RunUDP sends cfg.Rate packets per second spread round-robin over
// cfg.Flows UDP sockets created inside h's namespace, until cfg.Duration
// has passed or cfg.Stop is closed, then waits up to a second for the last
// replies. If ctx ends it returns at once with what it has.
// Every socket is unconnected so each packet gets a fresh route lookup:
// when the multipath default changes, the flow follows it (with the new
// interface's source address) as forwarded traffic would.
//
// started, if not nil, is called once the first packet is due, with the
// run's time origin.
func RunUDP(ctx context.Context, h *Host, cfg UDPConfig, started func(time.Time)) (*Traffic, error) {
	if cfg.Flows <= 0 || cfg.Rate <= 0 || cfg.Duration <= 0 {
		return nil, fmt.Errorf("udp traffic needs flows, rate and duration > 0 (got %d, %d, %v)", cfg.Flows, cfg.Rate, cfg.Duration)
	}
	total := int(int64(cfg.Rate) * int64(cfg.Duration) / int64(time.Second))
	if total > MaxPackets {
		return nil, fmt.Errorf("udp traffic of %d packets exceeds the bound of %d", total, MaxPackets)
	}
	perFlow := (total + cfg.Flows - 1) / cfg.Flows
	conns := make([]*net.UDPConn, cfg.Flows)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	err := h.Do(func() error {
		for i := range conns {
			port := 0
			if i < len(cfg.Ports) {
				port = cfg.Ports[i]
			}
			c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
			if err != nil {
				return fmt.Errorf("opening flow %d socket on port %d: %w", i, port, err)
			}
			conns[i] = c
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	tr := &Traffic{Flows: make([]*Flow, cfg.Flows)}
	for i, c := range conns {
		f := &Flow{
			Port: c.LocalAddr().(*net.UDPAddr).Port,
			Sent: make([]time.Duration, perFlow),
			Recv: make([]time.Duration, perFlow),
			Via:  make([]uint8, perFlow),
		}
		for j := range f.Sent {
			f.Sent[j], f.Recv[j] = -1, -1
		}
		tr.Flows[i] = f
	}

	var ifMu sync.Mutex
	ifIndex := map[string]uint8{}
	via := func(name string) uint8 {
		if name == "" {
			return 0
		}
		ifMu.Lock()
		defer ifMu.Unlock()
		if v, ok := ifIndex[name]; ok {
			return v
		}
		if len(tr.Ifaces) >= 255 {
			return 0
		}
		tr.Ifaces = append(tr.Ifaces, name)
		ifIndex[name] = uint8(len(tr.Ifaces))
		return ifIndex[name]
	}

	tr.Start = time.Now()
	if cfg.Progress != nil {
		cfg.Progress.init(tr.Start, cfg.Flows)
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func(flow int, c *net.UDPConn, f *Flow) {
			defer wg.Done()
			buf := make([]byte, 1500)
			for {
				n, err := c.Read(buf)
				if err != nil {
					return // closed by the sender side below
				}
				now := time.Since(tr.Start)
				if n < hdrLen || binary.BigEndian.Uint32(buf) != magic || int(binary.BigEndian.Uint16(buf[4:])) != flow {
					continue
				}
				seq := int(binary.BigEndian.Uint32(buf[8:]))
				if seq >= len(f.Recv) || f.Recv[seq] >= 0 {
					continue
				}
				f.Recv[seq] = now
				var name string
				if n > ifNameOff {
					b := buf[ifNameOff:min(n, ifNameOff+maxIfName)]
					if k := strings.IndexByte(string(b), 0); k >= 0 {
						b = b[:k]
					}
					name = string(b)
					f.Via[seq] = via(name)
				}
				if cfg.Progress != nil {
					cfg.Progress.got(flow, name, tr.Start.Add(now))
				}
			}
		}(i, c, tr.Flows[i])
	}

	dst := net.UDPAddrFromAddrPort(cfg.Target)
	interval := time.Second / time.Duration(cfg.Rate)
	pkt := make([]byte, packetLen)
	binary.BigEndian.PutUint32(pkt, magic)
	if !cfg.OneWay {
		binary.BigEndian.PutUint16(pkt[6:], flagReply)
	}
	if started != nil {
		started(tr.Start)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
send:
	for i := 0; i < total; i++ {
		due := time.Duration(i) * interval
		if wait := due - time.Since(tr.Start); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				break send
			case <-cfg.Stop:
				break send
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			break
		}
		flow, seq := i%cfg.Flows, i/cfg.Flows
		f := tr.Flows[flow]
		binary.BigEndian.PutUint16(pkt[4:], uint16(flow))
		binary.BigEndian.PutUint32(pkt[8:], uint32(seq))
		now := time.Since(tr.Start)
		binary.BigEndian.PutUint64(pkt[12:], uint64(now))
		f.Sent[seq] = now
		if _, err := conns[flow].WriteToUDP(pkt, dst); err != nil {
			tr.Errors++
		}
	}
	tr.End = time.Since(tr.Start)
	if !cfg.OneWay && ctx.Err() == nil {
		timer.Reset(lingerTime)
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
	}
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	return tr, nil
}

// Gap is the longest time a flow went without replies.
//
// It is measured on the sender's clock: from the send time of the last
// answered packet before a run of lost packets to the send time of the
// first answered packet after it. That is the stretch of time during which
// whatever the flow sent was lost; a pause of the sender itself (the lab
// shares a small machine with the daemon) loses nothing and is not an
// outage, and a late reply is latency (MaxRTT), not an outage. One lost
// packet in a flow sending every 4 ms is an 8 ms gap. RecvLen is the same
// gap measured between the receive times of those two replies.
type Gap struct {
	Flow    int
	From    time.Duration // send time of the last answered packet before the gap (or the window start)
	To      time.Duration // send time of the first answered packet after it (or of the last send, if Open)
	Len     time.Duration
	RecvLen time.Duration
	Resumed time.Duration // receive time of the first reply after the gap; -1 if Open
	Lost    int           // packets sent in the gap that got no reply
	Open    bool          // no reply came back before the end of the run: never recovered
	Valid   bool          // the window had traffic at all
}

// Ms is the gap length in milliseconds.
func (g Gap) Ms() float64 { return float64(g.Len) / float64(time.Millisecond) }

// LongestGap returns the longest gap in replies over every flow, looking at
// packets sent in [from, to). If a flow's last packets in the window were
// never answered, its gap runs to the last send and is Open; a flow that got
// no reply at all in the window is Open from its first packet.
func (t *Traffic) LongestGap(from, to time.Duration) Gap {
	best := Gap{Resumed: -1}
	for fi, f := range t.Flows {
		g := f.longestGap(from, to)
		g.Flow = fi
		if g.Valid && (!best.Valid || g.Len > best.Len) {
			best = g
		}
	}
	return best
}

func (f *Flow) longestGap(from, to time.Duration) Gap {
	g := Gap{Resumed: -1}
	lastSent, lastRecv := time.Duration(-1), time.Duration(-1) // previous answered packet
	firstSent, finalSent := time.Duration(-1), time.Duration(-1)
	lost := 0
	for seq, s := range f.Sent {
		if s < 0 || s < from || s >= to {
			continue
		}
		g.Valid = true
		if firstSent < 0 {
			firstSent = s
		}
		finalSent = s
		r := f.Recv[seq]
		if r < 0 {
			lost++
			continue
		}
		start, rstart := lastSent, lastRecv
		if start < 0 {
			start, rstart = firstSent, firstSent
		}
		if d := s - start; lost > 0 && d > g.Len {
			g.From, g.To, g.Len, g.RecvLen, g.Resumed, g.Lost, g.Open = start, s, d, r-rstart, r, lost, false
		}
		lastSent, lastRecv, lost = s, r, 0
	}
	if lost > 0 {
		start := lastSent
		if start < 0 {
			start = firstSent
		}
		if d := finalSent - start; d >= g.Len {
			g.From, g.To, g.Len, g.RecvLen, g.Resumed, g.Lost, g.Open = start, finalSent, d, d, -1, lost, true
		}
	}
	return g
}

// Delivery counts, per Server interface, the replies to packets sent in
// [from, to), plus the packets sent and lost and the slowest reply.
type Delivery struct {
	Sent, Lost int
	Via        map[string]int
	MaxRTT     time.Duration
}

// Delivered summarises which gateway carried the answered packets sent in
// [from, to).
func (t *Traffic) Delivered(from, to time.Duration) Delivery {
	d := Delivery{Via: map[string]int{}}
	for _, f := range t.Flows {
		for seq, s := range f.Sent {
			if s < 0 || s < from || s >= to {
				continue
			}
			d.Sent++
			if f.Recv[seq] < 0 {
				d.Lost++
				continue
			}
			d.MaxRTT = max(d.MaxRTT, f.Recv[seq]-s)
			name := "?"
			if v := f.Via[seq]; v > 0 && int(v) <= len(t.Ifaces) {
				name = t.Ifaces[v-1]
			}
			d.Via[name]++
		}
	}
	return d
}

// FirstVia returns the receive time of the first reply to a packet sent at
// or after from that came through Server interface iface, or -1.
func (t *Traffic) FirstVia(iface string, from time.Duration) time.Duration {
	best := time.Duration(-1)
	for _, f := range t.Flows {
		for seq, s := range f.Sent {
			if s < from || f.Recv[seq] < 0 {
				continue
			}
			if v := f.Via[seq]; v > 0 && int(v) <= len(t.Ifaces) && t.Ifaces[v-1] == iface {
				if best < 0 || f.Recv[seq] < best {
					best = f.Recv[seq]
				}
				break
			}
		}
	}
	return best
}

// String is a one-line summary: flows, sent, lost, per interface.
func (d Delivery) String() string {
	names := make([]string, 0, len(d.Via))
	for n := range d.Via {
		names = append(names, n)
	}
	sort.Strings(names)
	var sb strings.Builder
	fmt.Fprintf(&sb, "sent %d, lost %d", d.Sent, d.Lost)
	for _, n := range names {
		fmt.Fprintf(&sb, ", %d via %s", d.Via[n], n)
	}
	return sb.String()
}

// TCPConfig is a bounded TCP stream.
type TCPConfig struct {
	Target    netip.AddrPort // the Server's discard port
	LocalPort int            // 0: any
	Chunk     int            // bytes per write
	Rate      int            // writes per second
	Duration  time.Duration
}

// RunTCP connects from h's namespace and writes cfg.Chunk bytes cfg.Rate
// times a second for cfg.Duration, so the kernel sees forward progress on
// the connection (and confirms the gateway's neighbour entry) without
// flooding the lab. It returns the bytes written.
func RunTCP(ctx context.Context, h *Host, cfg TCPConfig) (int64, error) {
	if cfg.Chunk <= 0 || cfg.Rate <= 0 || cfg.Duration <= 0 {
		return 0, fmt.Errorf("tcp traffic needs chunk, rate and duration > 0")
	}
	var conn net.Conn
	err := h.Do(func() error {
		d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{Port: cfg.LocalPort}}
		c, err := d.DialContext(ctx, "tcp4", cfg.Target.String())
		if err != nil {
			return fmt.Errorf("connecting to %v: %w", cfg.Target, err)
		}
		conn = c
		return nil
	})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	buf := make([]byte, cfg.Chunk)
	tick := time.NewTicker(time.Second / time.Duration(cfg.Rate))
	defer tick.Stop()
	end := time.NewTimer(cfg.Duration)
	defer end.Stop()
	var n int64
	for {
		select {
		case <-ctx.Done():
			return n, nil
		case <-end.C:
			return n, nil
		case <-tick.C:
			_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
			w, err := conn.Write(buf)
			n += int64(w)
			if err != nil {
				return n, fmt.Errorf("writing to %v: %w", cfg.Target, err)
			}
		}
	}
}

// ServeEcho is the lab's responder, run inside the Server namespace by
// `uplinkd-lab echo`: on UDP addr:EchoPort it answers requests that ask for
// it, adding the interface the request arrived on; on TCP addr:EchoPort and
// addr:DiscardPort it reads and discards. ready, if not nil, is called once
// every socket listens. It stops when ctx ends.
func ServeEcho(ctx context.Context, addr netip.Addr, ready func()) error {
	pc, err := net.ListenPacket("udp4", netip.AddrPortFrom(addr, EchoPort).String())
	if err != nil {
		return fmt.Errorf("listening on udp port %d: %w", EchoPort, err)
	}
	p := ipv4.NewPacketConn(pc)
	if err := p.SetControlMessage(ipv4.FlagInterface|ipv4.FlagDst, true); err != nil {
		pc.Close()
		return fmt.Errorf("asking for the arrival interface: %w", err)
	}
	var lns []net.Listener
	for _, port := range []int{EchoPort, DiscardPort} {
		ln, err := net.Listen("tcp4", netip.AddrPortFrom(addr, uint16(port)).String())
		if err != nil {
			pc.Close()
			for _, l := range lns {
				l.Close()
			}
			return fmt.Errorf("listening on tcp port %d: %w", port, err)
		}
		lns = append(lns, ln)
	}
	var wg sync.WaitGroup
	var connMu sync.Mutex
	conns := map[net.Conn]bool{}
	stop := func() {
		pc.Close()
		for _, l := range lns {
			l.Close()
		}
		connMu.Lock()
		for c := range conns {
			c.Close()
		}
		connMu.Unlock()
	}
	for _, ln := range lns {
		wg.Add(1)
		go func(ln net.Listener) {
			defer wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				connMu.Lock()
				if ctx.Err() != nil {
					connMu.Unlock()
					c.Close()
					return
				}
				conns[c] = true
				connMu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _ = io.Copy(io.Discard, c)
					connMu.Lock()
					delete(conns, c)
					connMu.Unlock()
					c.Close()
				}()
			}
		}(ln)
	}
	// Interface names are looked up here, on the caller's thread, which is
	// in the namespace being served; the reader goroutine below may run on
	// any thread, and a lookup there could see another namespace.
	names := map[int]string{}
	if ifs, err := net.Interfaces(); err == nil {
		for _, ifi := range ifs {
			names[ifi.Index] = ifi.Name
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			n, cm, from, err := p.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < hdrLen || binary.BigEndian.Uint32(buf) != magic || binary.BigEndian.Uint16(buf[6:])&flagReply == 0 {
				continue
			}
			if n < packetLen {
				n = packetLen
			}
			name := ""
			if cm != nil {
				var ok bool
				if name, ok = names[cm.IfIndex]; !ok {
					name = strconv.Itoa(cm.IfIndex)
				}
			}
			clear(buf[ifNameOff : ifNameOff+maxIfName])
			copy(buf[ifNameOff:ifNameOff+maxIfName], name)
			// Reply from the address the request was sent to, as a real
			// server's connected socket would: a reply from another of
			// the Server's addresses matches no conntrack entry behind a
			// NAT router, and is dropped there.
			var reply *ipv4.ControlMessage
			if cm != nil && cm.Dst != nil {
				reply = &ipv4.ControlMessage{Src: cm.Dst}
			}
			_, _ = p.WriteTo(buf[:n], reply, from)
		}
	}()
	if ready != nil {
		ready()
	}
	<-ctx.Done()
	stop()
	wg.Wait()
	return nil
}

// errNoRoute is returned by PickPorts when the Host has no route to dst.
var errNoRoute = errors.New("no route")

// PickPorts returns source ports for flows from h to dst:dport (proto "udp"
// or "tcp") such that perDev[dev] of them leave through each device, as
// `ip route get` says the multipath hash places them now. It needs a
// layer-4 multipath hash policy to spread flows, and bounds its search.
func PickPorts(h *Host, dst netip.Addr, proto string, dport int, perDev map[string]int, first int) ([]int, map[int]string, error) {
	need := 0
	for _, n := range perDev {
		need += n
	}
	got := map[string]int{}
	var ports []int
	devOf := map[int]string{}
	for p := first; p < first+400 && len(ports) < need; p++ {
		out, err := h.Run("ip", "-o", "route", "get", dst.String(), "ipproto", proto, "sport", strconv.Itoa(p), "dport", strconv.Itoa(dport))
		if err != nil {
			return nil, nil, fmt.Errorf("asking the route to %v: %w: %s: %w", dst, err, strings.TrimSpace(out), errNoRoute)
		}
		f := strings.Fields(out)
		dev := ""
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "dev" {
				dev = f[i+1]
				break
			}
		}
		if got[dev] < perDev[dev] {
			got[dev]++
			ports = append(ports, p)
			devOf[p] = dev
		}
	}
	if len(ports) < need {
		return nil, nil, fmt.Errorf("finding %v flows to %v: only %v after 400 ports (is fib_multipath_hash_policy layer 4?)", perDev, dst, got)
	}
	return ports, devOf, nil
}
