package detector

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"

	"github.com/mdlayher/ethtool"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
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
	// LinkStats reads only the packet counters of the interface with
	// index (RTM_GETSTATS): the traffic poller's hot path, a fraction of
	// the kernel's cost of a full link message. An interface that is gone
	// is an error.
	LinkStats(index int) (LinkCounters, error)
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

// LinkCounters are an interface's packet counters.
type LinkCounters struct {
	Tx, Rx uint64
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

	statsMu sync.Mutex // one request at a time on stats
	stats   *nl.NetlinkSocket
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
	// The netlink library has no RTM_GETSTATS; a socket of our own (in
	// ns, like the handle's) carries it.
	st, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("opening netlink socket for link statistics: %w", err)
	}
	// A lost reply must not hang the poller.
	if err := st.SetReceiveTimeout(&unix.Timeval{Sec: 1}); err != nil {
		st.Close()
		h.Close()
		return nil, fmt.Errorf("setting the link statistics socket's timeout: %w", err)
	}
	return &Kernel{ns: ns, h: h, stats: st}, nil
}

// sizeofIfStatsMsg is struct if_stats_msg: family, two pads, ifindex,
// filter_mask.
const sizeofIfStatsMsg = 12

func (k *Kernel) LinkStats(index int) (LinkCounters, error) {
	k.statsMu.Lock()
	defer k.statsMu.Unlock()
	if k.stats == nil {
		return LinkCounters{}, errors.New("reading link statistics: kernel adapter closed")
	}
	req := nl.NewNetlinkRequest(unix.RTM_GETSTATS, 0)
	msg := make([]byte, sizeofIfStatsMsg)
	nl.NativeEndian().PutUint32(msg[4:], uint32(index))
	nl.NativeEndian().PutUint32(msg[8:], 1<<(unix.IFLA_STATS_LINK_64-1))
	req.AddRawData(msg)
	if err := k.stats.Send(req); err != nil {
		return LinkCounters{}, fmt.Errorf("requesting statistics of link %d: %w", index, err)
	}
	for {
		msgs, _, err := k.stats.Receive()
		if err != nil {
			return LinkCounters{}, fmt.Errorf("reading statistics of link %d: %w", index, err)
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Seq {
				continue // a late answer to an earlier request
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(nl.NativeEndian().Uint32(m.Data[:4])); errno != 0 {
						return LinkCounters{}, fmt.Errorf("reading statistics of link %d: %w", index, unix.Errno(-errno))
					}
				}
				return LinkCounters{}, fmt.Errorf("reading statistics of link %d: no statistics in the answer", index)
			case unix.RTM_NEWSTATS:
				return parseLinkStats(m.Data, index)
			}
		}
	}
}

// parseLinkStats reads rx_packets and tx_packets, the first two fields of
// struct rtnl_link_stats64, from an RTM_NEWSTATS message body.
func parseLinkStats(b []byte, index int) (LinkCounters, error) {
	if len(b) < sizeofIfStatsMsg {
		return LinkCounters{}, fmt.Errorf("reading statistics of link %d: short message", index)
	}
	attrs, err := nl.ParseRouteAttr(b[sizeofIfStatsMsg:])
	if err != nil {
		return LinkCounters{}, fmt.Errorf("reading statistics of link %d: %w", index, err)
	}
	for _, a := range attrs {
		if a.Attr.Type == unix.IFLA_STATS_LINK_64 && len(a.Value) >= 16 {
			return LinkCounters{Rx: nl.NativeEndian().Uint64(a.Value[0:]), Tx: nl.NativeEndian().Uint64(a.Value[8:])}, nil
		}
	}
	return LinkCounters{}, fmt.Errorf("reading statistics of link %d: no 64-bit counters in the answer", index)
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
	k.statsMu.Lock()
	if k.stats != nil {
		k.stats.Close()
		k.stats = nil
	}
	k.statsMu.Unlock()
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
