package detector

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeKernel is an in-memory Netlink: links with carrier and counters,
// neighbours, and subscriptions that behave like netlink's (ListExisting,
// channel closed when done is closed).
type fakeKernel struct {
	mu        sync.Mutex
	links     map[string]*fakeLink
	neighs    map[neighKey]netlink.Neigh
	linkSubs  map[chan<- netlink.LinkUpdate]bool
	neighSubs map[chan<- netlink.NeighUpdate]bool
	neighSets []netlink.Neigh
	modes     map[string]LinkMode
	addrs     map[int][]netlink.Addr
}

type fakeLink struct {
	index  int
	flags  uint32
	tx, rx uint64
}

type neighKey struct {
	index int
	ip    netip.Addr
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{links: map[string]*fakeLink{}, neighs: map[neighKey]netlink.Neigh{},
		linkSubs: map[chan<- netlink.LinkUpdate]bool{}, neighSubs: map[chan<- netlink.NeighUpdate]bool{},
		modes: map[string]LinkMode{}, addrs: map[int][]netlink.Addr{}}
}

const upFlags = unix.IFF_UP | unix.IFF_LOWER_UP | unix.IFF_RUNNING

func (k *fakeKernel) link(name string, l *fakeLink) netlink.Link {
	a := netlink.NewLinkAttrs()
	a.Name, a.Index, a.RawFlags = name, l.index, l.flags
	a.Statistics = &netlink.LinkStatistics{TxPackets: l.tx, RxPackets: l.rx}
	return &netlink.Veth{LinkAttrs: a}
}

// addLink creates or re-creates an interface and announces it.
func (k *fakeKernel) addLink(name string, index int, addr string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := &fakeLink{index: index, flags: upFlags}
	k.links[name] = l
	if addr != "" {
		p := netip.MustParsePrefix(addr)
		k.addrs[index] = []netlink.Addr{{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}}
	}
	k.announceLink(unix.RTM_NEWLINK, name, l)
}

func (k *fakeKernel) delLink(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.links[name]
	delete(k.links, name)
	k.announceLink(unix.RTM_DELLINK, name, l)
}

func (k *fakeKernel) setCarrier(name string, on bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.links[name]
	if on {
		l.flags |= unix.IFF_LOWER_UP
	} else {
		l.flags &^= unix.IFF_LOWER_UP
	}
	k.announceLink(unix.RTM_NEWLINK, name, l)
}

func (k *fakeKernel) addTraffic(name string, tx, rx uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.links[name]
	l.tx += tx
	l.rx += rx
}

func (k *fakeKernel) announceLink(typ uint16, name string, l *fakeLink) {
	u := netlink.LinkUpdate{Link: k.link(name, l)}
	u.Header.Type = typ
	for ch := range k.linkSubs {
		ch <- u
	}
}

func (k *fakeKernel) setNeigh(index int, ip string, state int, mac string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := netlink.Neigh{LinkIndex: index, Family: unix.AF_INET, IP: net.ParseIP(ip), State: state}
	if mac != "" {
		n.HardwareAddr, _ = net.ParseMAC(mac)
	}
	k.neighs[neighKey{index, netip.MustParseAddr(ip)}] = n
	for ch := range k.neighSubs {
		ch <- netlink.NeighUpdate{Type: unix.RTM_NEWNEIGH, Neigh: n}
	}
}

func (k *fakeKernel) LinkByName(name string) (netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.links[name]
	if l == nil {
		return nil, netlink.LinkNotFoundError{}
	}
	return k.link(name, l), nil
}

func (k *fakeKernel) LinkStats(i int) (LinkCounters, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, l := range k.links {
		if l.index == i {
			return LinkCounters{Tx: l.tx, Rx: l.rx}, nil
		}
	}
	return LinkCounters{}, unix.ENODEV
}

func (k *fakeKernel) LinkByIndex(i int) (netlink.Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for name, l := range k.links {
		if l.index == i {
			return k.link(name, l), nil
		}
	}
	return nil, netlink.LinkNotFoundError{}
}

func (k *fakeKernel) AddrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.addrs[l.Attrs().Index], nil
}

func (k *fakeKernel) NeighList(index, family int) ([]netlink.Neigh, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []netlink.Neigh
	for key, n := range k.neighs {
		if key.index == index {
			out = append(out, n)
		}
	}
	return out, nil
}

func (k *fakeKernel) NeighSet(n *netlink.Neigh) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.neighSets = append(k.neighSets, *n)
	// Nothing answers in the fake: a PROBE request is refused, so rounds
	// are decided by the ICMP prober.
	return unix.EINVAL
}

func (k *fakeKernel) LinkSubscribe(ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error {
	k.mu.Lock()
	for name, l := range k.links {
		u := netlink.LinkUpdate{Link: k.link(name, l)}
		u.Header.Type = unix.RTM_NEWLINK
		ch <- u
	}
	k.linkSubs[ch] = true
	k.mu.Unlock()
	go func() {
		<-done
		k.mu.Lock()
		delete(k.linkSubs, ch)
		close(ch)
		k.mu.Unlock()
	}()
	return nil
}

func (k *fakeKernel) NeighSubscribe(ch chan<- netlink.NeighUpdate, done <-chan struct{}, onErr func(error)) error {
	k.mu.Lock()
	for _, n := range k.neighs {
		ch <- netlink.NeighUpdate{Type: unix.RTM_NEWNEIGH, Neigh: n}
	}
	k.neighSubs[ch] = true
	k.mu.Unlock()
	go func() {
		<-done
		k.mu.Lock()
		delete(k.neighSubs, ch)
		close(ch)
		k.mu.Unlock()
	}()
	return nil
}

func (k *fakeKernel) LinkMode(name string) (LinkMode, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	m, ok := k.modes[name]
	if !ok {
		return LinkMode{}, ErrNotSupported
	}
	return m, nil
}

func (k *fakeKernel) Close() error { return nil }

// fakeProber answers according to alive, per gateway interface, and
// records every probe.
type fakeProber struct {
	mu     sync.Mutex
	alive  map[string]bool // by Iface
	probes []Target
	n      atomic.Int64
}

func newFakeProber() *fakeProber { return &fakeProber{alive: map[string]bool{}} }

func (p *fakeProber) set(iface string, alive bool) {
	p.mu.Lock()
	p.alive[iface] = alive
	p.mu.Unlock()
}

func (p *fakeProber) count() int64 { return p.n.Load() }

func (p *fakeProber) last() Target {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.probes) == 0 {
		return Target{}
	}
	return p.probes[len(p.probes)-1]
}

func (p *fakeProber) Probe(ctx context.Context, t Target) (time.Duration, error) {
	p.n.Add(1)
	p.mu.Lock()
	p.probes = append(p.probes, t)
	alive := p.alive[t.Iface]
	p.mu.Unlock()
	if alive {
		return time.Millisecond, nil
	}
	timer := time.NewTimer(t.Timeout)
	defer timer.Stop()
	select {
	case <-timer.C:
		return 0, errTimeout
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (p *fakeProber) Close() error { return nil }

var _ = errors.New
