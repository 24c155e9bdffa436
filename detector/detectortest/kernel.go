package detectortest

import (
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/uplinkd/uplinkd/detector"
)

// Op names a kernel operation, for injected errors and blocks.
type Op string

const (
	OpLink                Op = "link"
	OpSubscribeLinks      Op = "subscribe-links"
	OpNeighbours          Op = "neighbours"
	OpResolve             Op = "resolve"
	OpRevalidate          Op = "revalidate"
	OpSubscribeNeighbours Op = "subscribe-neighbours"
	OpAddresses           Op = "addresses"
	OpLinkMode            Op = "link-mode"
	OpCounters            Op = "counters"
)

// Kernel is an in-memory detector.Kernel: interfaces by name and index
// with carrier and packet counters, neighbours keyed like the kernel's
// (interface index and address), addresses, link modes, and
// subscriptions that behave like netlink's (existing state first, the
// channel closed once done is closed). Any operation can be made to fail
// (Fail) or to hang until released (Block).
type Kernel struct {
	mu        sync.Mutex
	links     map[string]*link
	neighs    map[neighKey]detector.Neighbour
	addrs     map[int][]detector.Address
	modes     map[string]detector.LinkMode
	linkSubs  map[*subscription[detector.Link]]bool
	neighSubs map[*subscription[detector.Neighbour]]bool
	resolves  []netip.Addr
	errs      map[Op]error
	blocks    map[Op]chan struct{}
}

type link struct {
	index   int
	adminUp bool
	carrier bool
	tx, rx  uint64
}

type neighKey struct {
	index int
	addr  netip.Addr
}

var _ detector.Kernel = (*Kernel)(nil)

// NewKernel returns an empty kernel.
func NewKernel() *Kernel {
	return &Kernel{links: map[string]*link{}, neighs: map[neighKey]detector.Neighbour{},
		addrs: map[int][]detector.Address{}, modes: map[string]detector.LinkMode{},
		linkSubs: map[*subscription[detector.Link]]bool{}, neighSubs: map[*subscription[detector.Neighbour]]bool{},
		errs: map[Op]error{}, blocks: map[Op]chan struct{}{}}
}

// Fail makes op return err from now on; nil clears it.
func (k *Kernel) Fail(op Op, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		delete(k.errs, op)
		return
	}
	k.errs[op] = err
}

// Block makes every call of op hang until release is called: a wedged
// kernel call. release is idempotent.
func (k *Kernel) Block(op Op) (release func()) {
	ch := make(chan struct{})
	k.mu.Lock()
	k.blocks[op] = ch
	k.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			k.mu.Lock()
			if k.blocks[op] == ch {
				delete(k.blocks, op)
			}
			k.mu.Unlock()
			close(ch)
		})
	}
}

// enter runs the injected block and error of op; it returns with k.mu
// held when the operation may go on.
func (k *Kernel) enter(op Op) error {
	k.mu.Lock()
	if ch := k.blocks[op]; ch != nil {
		k.mu.Unlock()
		<-ch
		k.mu.Lock()
	}
	if err := k.errs[op]; err != nil {
		k.mu.Unlock()
		return fmt.Errorf("fake kernel %s: %w", op, err)
	}
	return nil
}

// AddLink creates or re-creates interface name with index, up with
// carrier, and announces it; addr ("198.18.1.2/24"), if set, is its
// address.
func (k *Kernel) AddLink(name string, index int, addr string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := &link{index: index, adminUp: true, carrier: true}
	k.links[name] = l
	if addr != "" {
		k.addrs[index] = []detector.Address{{IP: netip.MustParsePrefix(addr).Addr()}}
	}
	k.announceLink(linkOf(name, l))
}

// DelLink removes interface name and announces it.
func (k *Kernel) DelLink(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.links[name]
	if l == nil {
		return
	}
	delete(k.links, name)
	k.announceLink(detector.Link{Name: name, Index: l.index, Deleted: true})
}

// SetCarrier sets the lower layer of interface name and announces it.
func (k *Kernel) SetCarrier(name string, on bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.links[name]
	l.carrier = on
	k.announceLink(linkOf(name, l))
}

// AddTraffic counts packets sent and received on interface name. Like a
// kernel's counters, it raises no event.
func (k *Kernel) AddTraffic(name string, tx, rx uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.links[name]
	l.tx += tx
	l.rx += rx
}

// SetNeighbour creates or changes the entry of ip on the interface with
// index and announces it; mac may be empty.
func (k *Kernel) SetNeighbour(index int, ip string, state detector.NUD, mac string) {
	k.SetNeighbourEntry(detector.Neighbour{Index: index, Addr: netip.MustParseAddr(ip), State: state, HwAddr: mustMAC(mac)})
}

// SetNeighbourEntry creates or changes an entry (its confirmation age
// included) and announces it.
func (k *Kernel) SetNeighbourEntry(n detector.Neighbour) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.neighs[neighKey{n.Index, n.Addr}] = n
	for s := range k.neighSubs {
		s.push(n)
	}
}

// SetLinkMode makes interface name report mode (no mode: ErrNotSupported).
func (k *Kernel) SetLinkMode(name string, mode detector.LinkMode) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.modes[name] = mode
}

// Resolves lists the addresses the detector asked to resolve.
func (k *Kernel) Resolves() []netip.Addr {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]netip.Addr(nil), k.resolves...)
}

func mustMAC(s string) net.HardwareAddr {
	if s == "" {
		return nil
	}
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return hw
}

func linkOf(name string, l *link) detector.Link {
	return detector.Link{Name: name, Index: l.index, AdminUp: l.adminUp, Carrier: l.adminUp && l.carrier}
}

// announceLink tells every link subscriber; k.mu is held.
func (k *Kernel) announceLink(l detector.Link) {
	for s := range k.linkSubs {
		s.push(l)
	}
}
