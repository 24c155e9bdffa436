package l2count

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// BPFCounter counts per neighbour with uplinkd's own tc programs, attached
// with tcx to the managed interfaces of one network namespace. It is a
// Table, like the nftables Counter. The attachments are not links: they
// stay when the daemon exits, and the next Open adopts them, by program
// name and tag, with no write. Open needs CAP_BPF to load and
// CAP_SYS_ADMIN to adopt (a program is opened by id); later calls need
// only CAP_NET_ADMIN (attach, detach) and the descriptors already held.
type BPFCounter struct {
	mu     sync.Mutex
	ns     netns.NsHandle // not owned
	h      *netlink.Handle
	seen   *ebpf.Map
	progs  [2]*ebpf.Program // by Dir
	ids    [2]ebpf.ProgramID
	stale  map[ebpf.ProgramID]*ebpf.Program // older uplinkd programs found at Open
	keys   map[[bpfKeySize]byte]keyDir      // what the last Sync counts
	now    func() time.Time
	mono   func() time.Duration // CLOCK_MONOTONIC_COARSE, the programs' clock
	cpus   int                  // possible CPUs: a per-CPU value's length
	closed bool
}

// ErrAdopt says an attached program could not be inspected (opening it by
// id needs CAP_SYS_ADMIN): uplinkd cannot tell whether it is its own.
var ErrAdopt = errors.New("cannot inspect programs attached to the interfaces")

// OpenBPF returns the eBPF counter of namespace ns (netns.None(): the
// caller's), adopting uplinkd's programs already attached there, or
// loading new ones (attached by the first Sync). An error wrapping
// ErrUnsupported means eBPF counting is not available here: the kernel
// lacks tcx (6.6) or the process lacks CAP_BPF or CAP_SYS_ADMIN.
func OpenBPF(ns netns.NsHandle) (*BPFCounter, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("counting CPUs: %w", err)
	}
	c := &BPFCounter{ns: ns, h: h, stale: map[ebpf.ProgramID]*ebpf.Program{},
		now: time.Now, mono: monotonicCoarse, cpus: cpus}
	if err := c.adoptOrLoad(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func monotonicCoarse() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts)
	return time.Duration(ts.Nano())
}

// adoptOrLoad loads this build's programs, then looks for programs of
// the same name and tag (the kernel's hash of the code, with the map's
// descriptor left out) attached in the namespace: a pair of them sharing
// a map is adopted with its counts, and the fresh load dropped. Other
// programs named as ours are stale, to be detached by the next Sync.
func (c *BPFCounter) adoptOrLoad() error {
	if err := c.load(); err != nil {
		return err
	}
	var tags [2]string
	for d, p := range c.progs {
		info, err := p.Info()
		if err != nil {
			return fmt.Errorf("reading program info: %w", err)
		}
		tags[d] = info.Tag
	}
	found, err := c.attached()
	if err != nil {
		return err
	}
	var cand [2]*ebpf.Program
	var mapIDs [2]ebpf.MapID
	for id := range found {
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			if errors.Is(err, unix.EPERM) {
				return fmt.Errorf("%w: %w (needs CAP_SYS_ADMIN at start): %w", ErrUnsupported, ErrAdopt, err)
			}
			continue // detached meanwhile
		}
		d, mid, mine := ours(p, tags)
		switch {
		case !mine:
			p.Close() // another program: not ours to touch
		case mid != 0 && cand[d] == nil:
			cand[d], mapIDs[d] = p, mid
		default:
			c.stale[id] = p
		}
	}
	if cand[Rx] != nil && cand[Tx] != nil && mapIDs[Rx] == mapIDs[Tx] {
		if m, err := ebpf.NewMapFromID(mapIDs[Rx]); err == nil && mapOK(m) {
			for _, p := range c.progs {
				p.Close()
			}
			c.seen.Close()
			c.seen, c.progs = m, cand
			return c.fillIDs()
		}
	}
	for _, p := range cand { // half a pair, or maps that differ: replaced
		if p != nil {
			info, _ := p.Info()
			id, _ := info.ID()
			c.stale[id] = p
		}
	}
	return nil
}

// ours reports whether p is uplinkd's program of a direction (by name),
// and when it is this build's (its tag among tags, one map) the id of its
// map; 0 means ours but stale.
func ours(p *ebpf.Program, tags [2]string) (Dir, ebpf.MapID, bool) {
	info, err := p.Info()
	if err != nil {
		return 0, 0, false
	}
	var d Dir
	switch info.Name {
	case progNameRx:
		d = Rx
	case progNameTx:
		d = Tx
	default:
		return 0, 0, false
	}
	ids, _ := info.MapIDs()
	if info.Tag != tags[d] || len(ids) != 1 {
		return d, 0, true
	}
	return d, ids[0], true
}

func mapOK(m *ebpf.Map) bool {
	want := seenMapSpec()
	return m.Type() == want.Type && m.KeySize() == want.KeySize && m.ValueSize() == want.ValueSize
}

func (c *BPFCounter) load() error {
	m, err := ebpf.NewMap(seenMapSpec())
	if err != nil {
		return loadErr("creating map "+mapName, err)
	}
	c.seen = m
	for _, d := range []Dir{Rx, Tx} {
		p, err := ebpf.NewProgramWithOptions(progSpec(d, m.FD()), ebpf.ProgramOptions{})
		if err != nil {
			return loadErr("loading program", err)
		}
		c.progs[d] = p
	}
	return c.fillIDs()
}

func loadErr(what string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("%s: %w: %w", what, ErrUnsupported, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (c *BPFCounter) fillIDs() error {
	for d, p := range c.progs {
		info, err := p.Info()
		if err != nil {
			return fmt.Errorf("reading program info: %w", err)
		}
		id, ok := info.ID()
		if !ok {
			return fmt.Errorf("reading program info: %w: no id", ErrUnsupported)
		}
		c.ids[d] = id
	}
	return nil
}

func attachType(d Dir) ebpf.AttachType {
	if d == Tx {
		return ebpf.AttachTCXEgress
	}
	return ebpf.AttachTCXIngress
}

// attached returns every program id attached with tcx to any interface
// of the namespace, and where.
func (c *BPFCounter) attached() (map[ebpf.ProgramID][]Hook, error) {
	links, err := c.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	out := map[ebpf.ProgramID][]Hook{}
	err = c.inNS(func() error {
		for _, l := range links {
			for _, d := range []Dir{Rx, Tx} {
				r, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: attachType(d)})
				if err != nil {
					if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) {
						return fmt.Errorf("querying tcx: %w: %w", ErrUnsupported, err)
					}
					if errors.Is(err, unix.ENODEV) {
						continue // gone meanwhile
					}
					return fmt.Errorf("querying tcx on %s: %w", l.Attrs().Name, err)
				}
				for _, p := range r.Programs {
					out[p.ID] = append(out[p.ID], Hook{l.Attrs().Index, d})
				}
			}
		}
		return nil
	})
	return out, err
}

// inNS runs fn on a thread in the counter's namespace: tcx attaches,
// detaches and queries name the interface by index, in the caller's
// namespace.
func (c *BPFCounter) inNS(fn func() error) error {
	if !c.ns.IsOpen() {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("reading the thread's namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(c.ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering the namespace: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread stays locked, and dies with its goroutine.
		return errors.Join(ferr, fmt.Errorf("leaving the namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// Close releases the descriptors. The attachments stay, with the map they
// count in: the next Open adopts them (see Withdraw).
func (c *BPFCounter) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	for _, p := range c.progs {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	for _, p := range c.stale {
		errs = append(errs, p.Close())
	}
	if c.seen != nil {
		errs = append(errs, c.seen.Close())
	}
	if c.h != nil {
		c.h.Close()
	}
	return errors.Join(errs...)
}
