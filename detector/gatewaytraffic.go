package detector

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/uplinkd/uplinkd/detector/l2count"
)

// GatewayTraffic is the per-gateway TrafficCounters: each gateway's own
// packets, counted in the kernel by its link-layer address and family
// (package l2count: uplinkd's tcx programs, or where eBPF cannot be
// loaded its nftables table). Replies through one gateway then no longer
// hide the silence of another on the same interface. Where the kernel
// cannot count per neighbour at all it falls back to the interface
// counters of iface, and PerGateway says so.
type GatewayTraffic struct {
	src     *l2count.Source
	table   io.Closer
	neigh   *l2count.NetlinkNeighbours
	backend string // BackendTCX or BackendNftables
	why     string // why not BackendTCX
}

// Per-neighbour counting backends, in order of preference.
const (
	BackendTCX      = "tcx"
	BackendNftables = "nftables"
)

// NewGatewayTraffic opens the per-gateway source of namespace ns
// (netns.None(): the caller's). It writes nothing until the first
// Counters call; iface is the fallback, not owned.
func NewGatewayTraffic(ns netns.NsHandle, iface TrafficCounters, log *slog.Logger) (*GatewayTraffic, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	table, backend, why, err := openTable(ns)
	if err != nil {
		return nil, fmt.Errorf("opening per-gateway counters: %w", err)
	}
	if why != "" {
		log.Info("counting per gateway with nftables, not eBPF", "err", why)
	}
	neigh, err := l2count.OpenNeighbours(ns)
	if err != nil {
		table.Close()
		return nil, fmt.Errorf("opening per-gateway counters: %w", err)
	}
	return &GatewayTraffic{table: table, neigh: neigh, backend: backend, why: why, src: l2count.NewSource(l2count.SourceConfig{
		Table: table, Neighbours: neigh, Logger: log.With("component", "l2count"),
		Interface: func(index int) (uint64, uint64, error) {
			cs, err := iface.Counters(index, []netip.Addr{{}})
			if err != nil {
				return 0, 0, err
			}
			if len(cs) != 1 {
				return 0, 0, errors.New("reading interface counters: no answer")
			}
			return cs[0].Tx, cs[0].Rx, nil
		},
	})}, nil
}

func (g *GatewayTraffic) Counters(index int, gws []netip.Addr) ([]Counters, error) {
	cs, err := g.src.Counters(index, gws)
	if err != nil {
		return nil, err
	}
	out := make([]Counters, len(cs))
	for i, c := range cs {
		out[i] = Counters{Tx: c.Tx, Rx: c.Rx}
	}
	return out, nil
}

// PerGateway reports whether the counts are each gateway's own and, when
// they are the interface's (the fallback), why.
func (g *GatewayTraffic) PerGateway() (bool, string) {
	m, why := g.src.Mode()
	return m == l2count.ModeNeighbour, why
}

// Backend says how gateways are counted (BackendTCX, BackendNftables)
// and, when not with tcx, why.
func (g *GatewayTraffic) Backend() (string, string) { return g.backend, g.why }

// Withdraw detaches uplinkd's programs, or deletes its nftables table (on_exit = "withdraw").
func (g *GatewayTraffic) Withdraw() error { return g.src.Withdraw() }

// Close releases the sockets and descriptors; the programs or the table
// stay for the next start to adopt.
func (g *GatewayTraffic) Close() error {
	var errs []error
	if g.table != nil {
		errs = append(errs, g.table.Close())
	}
	if g.neigh != nil {
		errs = append(errs, g.neigh.Close())
	}
	return errors.Join(errs...)
}

// perGateway is a TrafficCounters that may tell gateways apart.
type perGateway interface{ PerGateway() (bool, string) }

// trafficPerGateway reports whether t tells the gateways of one interface
// apart, and why not.
func trafficPerGateway(t TrafficCounters) (bool, string) {
	if pg, ok := t.(perGateway); ok {
		return pg.PerGateway()
	}
	return false, "interface counters"
}

// GatewayTrafficOf wraps a Source built elsewhere (a test's, with a fake
// table); Close then closes nothing.
func GatewayTrafficOf(src *l2count.Source) *GatewayTraffic { return &GatewayTraffic{src: src} }

// tableCloser is a per-neighbour Table the daemon owns.
type tableCloser interface {
	l2count.Table
	io.Closer
}

// openTable opens the cheapest per-neighbour counter the kernel and the
// process's capabilities allow: uplinkd's tcx programs (a JITed hash
// lookup per frame), else its nftables table (interpreted rules, several
// times the cost per frame; docs/design.md), with the reason. Any failure
// of eBPF falls back, not only ErrUnsupported: counting is evidence, and
// a dearer counter is better than a daemon that does not start.
func openTable(ns netns.NsHandle) (tableCloser, string, string, error) {
	b, err := l2count.OpenBPF(ns)
	if err == nil {
		return &migrating{BPFCounter: b, ns: ns}, BackendTCX, "", nil
	}
	n, nerr := l2count.Open(ns)
	if nerr != nil {
		return nil, "", "", nerr
	}
	why := err.Error()
	if errors.Is(err, unix.EPERM) {
		why = "eBPF not permitted, start with CAP_BPF and CAP_SYS_ADMIN: " + why
	}
	return n, BackendNftables, why, nil
}

// migrating is the tcx counter, which on its first Sync also deletes the
// nftables table an older uplinkd (or a start without CAP_BPF) left: both
// are uplinkd's, and one counter is enough.
type migrating struct {
	*l2count.BPFCounter
	ns   netns.NsHandle
	done bool // the Source serialises Sync calls
}

func (m *migrating) Sync(want []l2count.Key) (int, error) {
	n, err := m.BPFCounter.Sync(want)
	if err != nil || m.done {
		return n, err
	}
	m.done = true
	old, oerr := l2count.Open(m.ns)
	if oerr != nil {
		return n, nil // no nf_tables here: nothing to migrate
	}
	defer old.Close()
	if have, rerr := old.Read(); rerr == nil && have.Table {
		if werr := old.Withdraw(); werr != nil {
			return n, fmt.Errorf("deleting the nftables table of an earlier start: %w", werr)
		}
		n++
	}
	return n, nil
}
