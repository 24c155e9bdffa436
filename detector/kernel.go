package detector

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/mdlayher/ethtool"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Netlink is the detector's whole view of the kernel's link and neighbour
// state: a thin adapter over *netlink.Handle (and the ethtool netlink
// family), small enough for an in-memory fake to implement the same
// contract in scenario tests.
type Netlink interface {
	LinkByName(name string) (netlink.Link, error)
	LinkByIndex(index int) (netlink.Link, error)
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	NeighList(linkIndex, family int) ([]netlink.Neigh, error)
	// NeighSet asks the kernel to (re)validate a neighbour: the ARP/ND probe.
	NeighSet(n *netlink.Neigh) error
	// LinkSubscribe and NeighSubscribe behave as netlink's
	// *SubscribeWithOptions with ListExisting: ch is closed when done is
	// closed or the subscription fails (onErr is told why), after which
	// the caller re-reads state and subscribes again.
	LinkSubscribe(ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error
	NeighSubscribe(ch chan<- netlink.NeighUpdate, done <-chan struct{}, onErr func(error)) error
	// LinkMode reads speed, duplex and auto-negotiation. Drivers that do
	// not report them (veth reports a subset) give ErrNotSupported.
	LinkMode(name string) (LinkMode, error)
	Close() error
}

// LinkMode is what ethtool says about an interface's negotiation.
type LinkMode struct {
	SpeedMbps   int  // 0 when unknown
	FullDuplex  bool // meaningful only when Duplex is known
	DuplexKnown bool
	Autoneg     bool
}

// ErrNotSupported says the driver does not report a link mode.
var ErrNotSupported = errors.New("not supported by the driver")

// Kernel is the real Netlink, bound to one network namespace.
type Kernel struct {
	ns     netns.NsHandle // netns.None() for the caller's namespace
	h      *netlink.Handle
	mu     sync.Mutex
	eth    *ethtool.Client
	ethErr error
}

// NewKernel returns the real kernel of namespace ns; pass netns.None() for
// the namespace the process runs in (the daemon is started inside the
// namespace it manages). The handle is not owned: the caller closes ns.
func NewKernel(ns netns.NsHandle) (*Kernel, error) {
	var h *netlink.Handle
	var err error
	if ns.IsOpen() {
		h, err = netlink.NewHandleAt(ns)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("opening netlink handle: %w", err)
	}
	return &Kernel{ns: ns, h: h}, nil
}

// Namespace returns the namespace the kernel adapter is bound to.
func (k *Kernel) Namespace() netns.NsHandle { return k.ns }

func (k *Kernel) LinkByName(name string) (netlink.Link, error) { return k.h.LinkByName(name) }
func (k *Kernel) LinkByIndex(i int) (netlink.Link, error)      { return k.h.LinkByIndex(i) }
func (k *Kernel) AddrList(l netlink.Link, family int) ([]netlink.Addr, error) {
	return k.h.AddrList(l, family)
}
func (k *Kernel) NeighList(i, family int) ([]netlink.Neigh, error) { return k.h.NeighList(i, family) }
func (k *Kernel) NeighSet(n *netlink.Neigh) error                  { return k.h.NeighSet(n) }

func (k *Kernel) nsOpt() *netns.NsHandle {
	if k.ns.IsOpen() {
		ns := k.ns
		return &ns
	}
	return nil
}

func (k *Kernel) LinkSubscribe(ch chan<- netlink.LinkUpdate, done <-chan struct{}, onErr func(error)) error {
	return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
		Namespace: k.nsOpt(), ErrorCallback: onErr, ListExisting: true, ReceiveBufferSize: 1 << 20,
	})
}

func (k *Kernel) NeighSubscribe(ch chan<- netlink.NeighUpdate, done <-chan struct{}, onErr func(error)) error {
	return netlink.NeighSubscribeWithOptions(ch, done, netlink.NeighSubscribeOptions{
		Namespace: k.nsOpt(), ErrorCallback: onErr, ListExisting: true, ReceiveBufferSize: 1 << 20,
	})
}

func (k *Kernel) LinkMode(name string) (LinkMode, error) {
	k.mu.Lock()
	eth, ethErr := k.eth, k.ethErr
	k.mu.Unlock()
	if eth == nil && ethErr == nil {
		// The generic netlink socket belongs to the namespace it is
		// created in, so create it there (without the lock: entering
		// the namespace waits on another goroutine).
		ethErr = InNamespace(k.ns, func() error {
			c, err := ethtool.New()
			eth = c
			return err
		})
		k.mu.Lock()
		switch {
		case k.eth != nil: // opened meanwhile by another caller
			if eth != nil {
				eth.Close()
			}
			eth, ethErr = k.eth, nil
		case k.h == nil: // closed meanwhile
			if eth != nil {
				eth.Close()
			}
			eth, ethErr = nil, errors.New("kernel adapter closed")
		default:
			k.eth, k.ethErr = eth, ethErr
		}
		k.mu.Unlock()
	}
	if ethErr != nil {
		return LinkMode{}, fmt.Errorf("opening ethtool netlink: %w: %w", ErrNotSupported, ethErr)
	}
	lm, err := eth.LinkMode(ethtool.Interface{Name: name})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.EOPNOTSUPP) {
			return LinkMode{}, fmt.Errorf("reading link mode of %s: %w", name, ErrNotSupported)
		}
		return LinkMode{}, fmt.Errorf("reading link mode of %s: %w", name, err)
	}
	out := LinkMode{Autoneg: lm.Autoneg == ethtool.AutonegOn}
	if lm.SpeedMegabits > 0 && lm.SpeedMegabits != -1 && uint32(lm.SpeedMegabits) != 0xffffffff {
		out.SpeedMbps = lm.SpeedMegabits
	}
	if lm.Duplex == ethtool.Full || lm.Duplex == ethtool.Half {
		out.DuplexKnown, out.FullDuplex = true, lm.Duplex == ethtool.Full
	}
	return out, nil
}

func (k *Kernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.eth != nil {
		k.eth.Close()
		k.eth = nil
	}
	if k.h != nil {
		k.h.Close()
		k.h = nil
	}
	return nil
}

// InNamespace runs fn on an OS thread switched into ns, so that sockets fn
// creates belong to ns; with netns.None() it simply runs fn. The calling
// goroutine's own thread is never switched. A thread that cannot be
// switched back is left locked, so the runtime discards it.
func InNamespace(ns netns.NsHandle, fn func() error) error {
	if !ns.IsOpen() {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("getting current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leaving namespace: %w", err))
			return // stay locked: the thread dies with the goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
