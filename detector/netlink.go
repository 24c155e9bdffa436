package detector

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"

	"github.com/mdlayher/ethtool"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Netlink is the production Kernel: a thin adapter over
// vishvananda/netlink's *netlink.Handle, an RTM_GETSTATS socket of its own
// and the ethtool netlink family, bound to one network namespace. It
// turns the library's types into the detector's and nothing else.
type Netlink struct {
	ns     netns.NsHandle // netns.None() for the caller's namespace
	h      *netlink.Handle
	mu     sync.Mutex
	eth    *ethtool.Client
	ethErr error

	statsMu sync.Mutex // one request at a time on stats
	stats   *nl.NetlinkSocket
}

// NewNetlink returns the real kernel of namespace ns; pass netns.None()
// for the namespace the process runs in (the daemon is started inside the
// namespace it manages). The handle is not owned: the caller closes ns.
func NewNetlink(ns netns.NsHandle) (*Netlink, error) {
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
	return &Netlink{ns: ns, h: h, stats: st}, nil
}

// sizeofIfStatsMsg is struct if_stats_msg: family, two pads, ifindex,
// filter_mask.
const sizeofIfStatsMsg = 12

// Counters reads the interface's packet counters (RTM_GETSTATS, a
// fraction of the kernel's cost of a full link message): every gateway on
// it gets the same ones.
func (k *Netlink) Counters(index int, gws []netip.Addr) ([]Counters, error) {
	c, err := k.linkStats(index)
	if err != nil {
		return nil, err
	}
	out := make([]Counters, len(gws))
	for i := range out {
		out[i] = c
	}
	return out, nil
}

func (k *Netlink) linkStats(index int) (Counters, error) {
	k.statsMu.Lock()
	defer k.statsMu.Unlock()
	if k.stats == nil {
		return Counters{}, errors.New("reading link statistics: kernel adapter closed")
	}
	req := nl.NewNetlinkRequest(unix.RTM_GETSTATS, 0)
	msg := make([]byte, sizeofIfStatsMsg)
	nl.NativeEndian().PutUint32(msg[4:], uint32(index))
	nl.NativeEndian().PutUint32(msg[8:], 1<<(unix.IFLA_STATS_LINK_64-1))
	req.AddRawData(msg)
	if err := k.stats.Send(req); err != nil {
		return Counters{}, fmt.Errorf("requesting statistics of link %d: %w", index, err)
	}
	for {
		msgs, _, err := k.stats.Receive()
		if err != nil {
			return Counters{}, fmt.Errorf("reading statistics of link %d: %w", index, err)
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Seq {
				continue // a late answer to an earlier request
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := int32(nl.NativeEndian().Uint32(m.Data[:4])); errno != 0 {
						return Counters{}, fmt.Errorf("reading statistics of link %d: %w", index, unix.Errno(-errno))
					}
				}
				return Counters{}, fmt.Errorf("reading statistics of link %d: no statistics in the answer", index)
			case unix.RTM_NEWSTATS:
				return parseLinkStats(m.Data, index)
			}
		}
	}
}

// parseLinkStats reads rx_packets and tx_packets, the first two fields of
// struct rtnl_link_stats64, from an RTM_NEWSTATS message body.
func parseLinkStats(b []byte, index int) (Counters, error) {
	if len(b) < sizeofIfStatsMsg {
		return Counters{}, fmt.Errorf("reading statistics of link %d: short message", index)
	}
	attrs, err := nl.ParseRouteAttr(b[sizeofIfStatsMsg:])
	if err != nil {
		return Counters{}, fmt.Errorf("reading statistics of link %d: %w", index, err)
	}
	for _, a := range attrs {
		if a.Attr.Type == unix.IFLA_STATS_LINK_64 && len(a.Value) >= 16 {
			return Counters{Rx: nl.NativeEndian().Uint64(a.Value[0:]), Tx: nl.NativeEndian().Uint64(a.Value[8:])}, nil
		}
	}
	return Counters{}, fmt.Errorf("reading statistics of link %d: no 64-bit counters in the answer", index)
}

// Namespace returns the namespace the kernel adapter is bound to.
func (k *Netlink) Namespace() netns.NsHandle { return k.ns }

func (k *Netlink) nsOpt() *netns.NsHandle {
	if k.ns.IsOpen() {
		ns := k.ns
		return &ns
	}
	return nil
}

func (k *Netlink) LinkMode(name string) (LinkMode, error) {
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

func (k *Netlink) Close() error {
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
